"""Finding a file on this machine, without network: ``--weights-dir`` first, then the huggingface_hub cache."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable

from instantmesh_cli.hub.manifest import manifest_entry
from instantmesh_cli.hub.paths import resolve_weights_dir
from instantmesh_cli.hub.verify import problem
from instantmesh_cli.settings import HubFile


def in_weights_dir(hub_file: HubFile, weights_dir: Path) -> Path:
    """Where ``hub_file`` belongs in a weights folder: ``DIR/<repo_id>/<filename>``."""
    return weights_dir / hub_file.repo_id / hub_file.filename


def weights_dir_copy(hub_file: HubFile, weights_dir: Path) -> tuple[Path, str | None] | None:
    """The folder's copy of ``hub_file`` and what is wrong with it (``None`` if there is no copy)."""
    path = in_weights_dir(hub_file, weights_dir)
    if not path.is_file():
        return None
    entry = manifest_entry(weights_dir, hub_file) or {}
    return path, problem(path, hub_file, etag=entry.get("sha256"), expected_size=entry.get("size"))


def cached(hub_file: HubFile) -> Path | None:
    """The huggingface_hub cache's copy of ``hub_file`` at its revision (snapshot path), if any."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_file.repo_id, hub_file.filename, revision=hub_file.revision,
                                   repo_type="model")
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found)
    return None


def blob_etag(path: Path) -> str | None:
    """The content id a cache blob is named after (``None`` outside the cache)."""
    real = path.resolve()
    if real.parent.name == "blobs":
        return real.name
    return None


def remove_cached(path: Path) -> None:
    """Delete a cache copy: the snapshot pointer and the blob it points to."""
    real = path.resolve()
    for p in (path, real):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def locate(hub_file: HubFile, *, weights_dir: str | os.PathLike[str] | None = None,
           verify: bool = False) -> Path | None:
    """Where ``hub_file`` is on this machine, without any network access (``None`` if nowhere).

    ``verify`` also checks the content (hashing a large file the first time);
    otherwise only presence and the known size are checked.
    """
    wdir = resolve_weights_dir(weights_dir)
    candidates: list[tuple[Path, str | None]] = []
    if wdir is not None:
        p = in_weights_dir(hub_file, wdir)
        if p.is_file():
            entry = manifest_entry(wdir, hub_file) or {}
            candidates.append((p, entry.get("sha256")))
    found = cached(hub_file)
    if found is not None:
        candidates.append((found, blob_etag(found)))
    for path, etag in candidates:
        if verify:
            if problem(path, hub_file, etag=etag) is None:
                return path
        elif hub_file.size is None or path.stat().st_size == hub_file.size:
            return path
    return None


def present(files: Iterable[HubFile], *, weights_dir: str | os.PathLike[str] | None = None
            ) -> dict[HubFile, Path | None]:
    """Where each file is on this machine (no network, no hashing); for `imesh doctor`."""
    return {f: locate(f, weights_dir=weights_dir) for f in files}
