"""Making a file available: ``--weights-dir``, then the cache (repaired if bad), then the Hub."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from instantmesh_cli.hub.download import Progress, download
from instantmesh_cli.hub.errors import CorruptWeightsError
from instantmesh_cli.hub.locate import blob_etag, cached, remove_cached, weights_dir_copy
from instantmesh_cli.hub.offline import download_command, is_offline, missing_offline
from instantmesh_cli.hub.paths import resolve_weights_dir
from instantmesh_cli.hub.verify import problem
from instantmesh_cli.settings import HubFile


@dataclass(frozen=True)
class FetchResult:
    """Where a file was found and what had to be done for it."""

    path: Path
    status: str  # "ok" (present, verified) | "downloaded" | "copied" (from the cache) | "repaired" (bad copy replaced)
    source: str  # "weights-dir" | "cache" | "hub" | "dir"


def ensure(hub_file: HubFile, *, offline: bool | None = None,
           weights_dir: str | os.PathLike[str] | None = None,
           progress: Progress | None = None) -> FetchResult:
    """Make ``hub_file`` available locally and say how (see :func:`fetch`)."""
    wdir = resolve_weights_dir(weights_dir)
    if wdir is not None:
        found = weights_dir_copy(hub_file, wdir)
        if found is not None:
            path, why = found
            if why is not None:
                raise CorruptWeightsError(f"{path} is corrupted: {why}",
                                          hint="copy it again, or run `imesh download --to DIR` again to repair it")
            return FetchResult(path, "ok", "weights-dir")
    repaired = False
    copy = cached(hub_file)
    if copy is not None:
        why = problem(copy, hub_file, etag=blob_etag(copy))
        if why is None:
            return FetchResult(copy, "ok", "cache")
        if is_offline(offline):
            raise CorruptWeightsError(f"{hub_file} in the cache is corrupted ({why}) and offline mode is on",
                                      hint=f"run `{download_command(hub_file)}` with network to fetch it again")
        remove_cached(copy)
        repaired = True
    if is_offline(offline):
        raise missing_offline(hub_file, "is not on this machine")
    path = download(hub_file, progress=progress)
    return FetchResult(path, "repaired" if repaired else "downloaded", "hub")


def fetch(hub_file: HubFile, *, offline: bool | None = None,
          weights_dir: str | os.PathLike[str] | None = None,
          progress: Progress | None = None) -> Path:
    """A verified local path of ``hub_file``.

    Looks in ``weights_dir`` (or ``IMESH_WEIGHTS_DIR``), then the huggingface_hub
    cache, then downloads into that cache unless ``offline`` (default:
    ``HF_HUB_OFFLINE``). Raises :class:`WeightsError` with the fix when it cannot.
    """
    return ensure(hub_file, offline=offline, weights_dir=weights_dir, progress=progress).path
