"""Checking a local copy: size, sha256 (registry or LFS ETag) and git blob sha1 (text-file ETag).

A successful check is remembered per (file, size, mtime), so a multi-GB
checkpoint is hashed once, not on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from instantmesh_cli.hub.errors import CorruptWeightsError
from instantmesh_cli.hub.paths import cache_dir
from instantmesh_cli.settings import HubFile

_CHUNK = 1 << 20


def file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    if algo == "sha1":  # git blob id: sha1 over "blob <size>\0" + content
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _expected_ids(hub_file: HubFile, etag: str | None) -> dict[str, str]:
    # The Hub's ETag is the sha256 for LFS/Xet files and the git blob sha1 for
    # small text files; the registry's sha256 (when known) wins over either.
    ids: dict[str, str] = {}
    if etag and len(etag) == 64:
        ids["sha256"] = etag.lower()
    elif etag and len(etag) == 40:
        ids["sha1"] = etag.lower()
    if hub_file.sha256:
        ids["sha256"] = hub_file.sha256.lower()
    return ids


def _stamp_path(path: Path, ids: dict[str, str]) -> Path:
    from instantmesh_cli.fileio import files_signature

    return cache_dir() / "verified" / files_signature([path.resolve()], *(f"{k}={v}" for k, v in sorted(ids.items())))


def problem(path: Path, hub_file: HubFile, etag: str | None = None,
            expected_size: int | None = None) -> str | None:
    """Why ``path`` is not a good copy of ``hub_file`` (``None`` if it is)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    want = hub_file.size if hub_file.size is not None else expected_size
    if want is not None and size != want:
        return f"size {size} bytes, expected {want}"
    ids = _expected_ids(hub_file, etag)
    if not ids:
        return None
    stamp = _stamp_path(path, ids)
    if stamp.exists():
        return None
    for algo, want_id in ids.items():
        got = file_digest(path, algo)
        if got != want_id:
            return f"{algo} {got[:12]}…, expected {want_id[:12]}…"
    with contextlib.suppress(OSError):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    return None


def check_remote(hub_file: HubFile, etag: str, size: int | None) -> None:
    """Refuse, before any byte is fetched, a Hub file that cannot match the registry."""
    if hub_file.sha256 and len(etag) == 64 and etag.lower() != hub_file.sha256.lower():
        raise CorruptWeightsError(
            f"the Hub serves {hub_file} with sha256 {etag[:12]}…, "
            f"but revision {hub_file.revision[:12]} should have {hub_file.sha256[:12]}…")
    if hub_file.size is not None and size is not None and size != hub_file.size:
        raise CorruptWeightsError(f"the Hub serves {hub_file} with {size} bytes, expected {hub_file.size}")
