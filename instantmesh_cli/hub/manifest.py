"""``imesh-manifest.json`` of a ``--weights-dir`` folder: revision, size and sha256 of each file.

Written by ``imesh download --to DIR`` so that a machine without network can
verify the folder's files without asking the Hub; the rembg matting models the
folder holds (``DIR/rembg/<name>.onnx``) are listed under ``"matting"``. A folder that holds files of no
Hub commit (fine-tuned checkpoints, ``imesh selftest --save-weights``) also
declares which revision it holds of each repo (``"revisions"``); the registry then
asks for that revision instead of the pinned one, so that no pinned size or hash
applies to files that are not the released ones.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

from instantmesh_cli.hub.paths import locked
from instantmesh_cli.hub.verify import file_digest
from instantmesh_cli.settings import HubFile

MANIFEST_NAME = "imesh-manifest.json"


def _key(hub_file: HubFile) -> str:
    return f"{hub_file.repo_id}/{hub_file.filename}"


def _read(manifest: Path) -> dict:
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _updating(target_dir: Path) -> Iterator[dict]:
    """The manifest's contents under its lock, written back atomically if the block changed them."""
    from instantmesh_cli.fileio import write_bytes_atomic

    manifest = target_dir / MANIFEST_NAME
    with locked(manifest):
        data = _read(manifest)
        before = json.dumps(data, sort_keys=True)
        yield data
        data["format"] = 1
        if json.dumps(data, sort_keys=True) != before:
            write_bytes_atomic(manifest, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def manifest_entry(weights_dir: Path, hub_file: HubFile) -> dict | None:
    """The manifest's record of ``hub_file`` at its revision (``None`` if absent or for another revision)."""
    entry = _read(weights_dir / MANIFEST_NAME).get("files", {}).get(_key(hub_file))
    if isinstance(entry, dict) and entry.get("revision") == hub_file.revision:
        return entry
    return None


def declared_revisions(weights_dir: Path | None) -> dict[str, str]:
    """The revision ``weights_dir`` says it holds of each repo (empty: the pinned ones)."""
    if weights_dir is None:
        return {}
    revisions = _read(weights_dir / MANIFEST_NAME).get("revisions")
    if not isinstance(revisions, dict):
        return {}
    return {str(k): str(v) for k, v in revisions.items() if isinstance(v, str) and v}


def declare_revisions(target_dir: Path, revisions: dict[str, str]) -> None:
    """Record in ``target_dir``'s manifest that it holds ``revisions`` (repo id -> revision)."""
    with _updating(target_dir) as data:
        data.setdefault("revisions", {}).update(revisions)


def record(target_dir: Path, hub_file: HubFile, path: Path) -> None:
    """Record ``path`` (a verified copy of ``hub_file``) in ``target_dir``'s manifest."""
    with _updating(target_dir) as data:
        files = data.setdefault("files", {})
        old = files.get(_key(hub_file)) or {}
        size = path.stat().st_size
        if old.get("revision") == hub_file.revision and old.get("size") == size and old.get("sha256"):
            return  # already recorded: no second sha256 of a multi-GB file
        files[_key(hub_file)] = {"revision": hub_file.revision, "size": size,
                                 "sha256": file_digest(path, "sha256")}


def record_matting(target_dir: Path, model: str, path: Path, *, md5: str) -> None:
    """Record ``path`` (a verified copy of rembg model ``model``) in ``target_dir``'s manifest.

    Under its own key, ``"matting"``: these files come from rembg's release, not from a
    Hub commit, so they have no revision and rembg pins them by md5.
    """
    entry = {"file": path.relative_to(target_dir).as_posix(), "size": path.stat().st_size, "md5": md5}
    with _updating(target_dir) as data:
        data.setdefault("matting", {})[model] = entry
