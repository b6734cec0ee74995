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

import json
from pathlib import Path

from instantmesh_cli.hub.paths import locked
from instantmesh_cli.hub.verify import file_digest
from instantmesh_cli.settings import HubFile

MANIFEST_NAME = "imesh-manifest.json"


def _key(hub_file: HubFile) -> str:
    return f"{hub_file.repo_id}/{hub_file.filename}"


def manifest_entry(weights_dir: Path, hub_file: HubFile) -> dict | None:
    """The manifest's record of ``hub_file`` at its revision (``None`` if absent or for another revision)."""
    try:
        data = json.loads((weights_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    entry = data.get("files", {}).get(_key(hub_file))
    if isinstance(entry, dict) and entry.get("revision") == hub_file.revision:
        return entry
    return None


def declared_revisions(weights_dir: Path | None) -> dict[str, str]:
    """The revision ``weights_dir`` says it holds of each repo (empty: the pinned ones)."""
    if weights_dir is None:
        return {}
    try:
        data = json.loads((weights_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    revisions = data.get("revisions") if isinstance(data, dict) else None
    if not isinstance(revisions, dict):
        return {}
    return {str(k): str(v) for k, v in revisions.items() if isinstance(v, str) and v}


def declare_revisions(target_dir: Path, revisions: dict[str, str]) -> None:
    """Record in ``target_dir``'s manifest that it holds ``revisions`` (repo id -> revision)."""
    from instantmesh_cli.fileio import write_bytes_atomic

    manifest = target_dir / MANIFEST_NAME
    with locked(manifest):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("revisions", {}).update(revisions)
        data["format"] = 1
        write_bytes_atomic(manifest, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def record(target_dir: Path, hub_file: HubFile, path: Path) -> None:
    """Record ``path`` (a verified copy of ``hub_file``) in ``target_dir``'s manifest."""
    from instantmesh_cli.fileio import write_bytes_atomic

    manifest = target_dir / MANIFEST_NAME
    with locked(manifest):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            data = {}
        files = data.setdefault("files", {})
        old = files.get(_key(hub_file)) or {}
        size = path.stat().st_size
        if old.get("revision") == hub_file.revision and old.get("size") == size and old.get("sha256"):
            return
        files[_key(hub_file)] = {"revision": hub_file.revision, "size": size,
                                 "sha256": file_digest(path, "sha256")}
        data["format"] = 1
        write_bytes_atomic(manifest, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def record_matting(target_dir: Path, model: str, path: Path, *, md5: str) -> None:
    """Record ``path`` (a verified copy of rembg model ``model``) in ``target_dir``'s manifest.

    Under its own key, ``"matting"``: these files come from rembg's release, not from a
    Hub commit, so they have no revision and rembg pins them by md5.
    """
    from instantmesh_cli.fileio import write_bytes_atomic

    manifest = target_dir / MANIFEST_NAME
    entry = {"file": path.relative_to(target_dir).as_posix(), "size": path.stat().st_size, "md5": md5}
    with locked(manifest):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            data = {}
        if data.get("matting", {}).get(model) == entry:
            return
        data.setdefault("matting", {})[model] = entry
        data["format"] = 1
        write_bytes_atomic(manifest, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
