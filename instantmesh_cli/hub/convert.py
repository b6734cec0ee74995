"""Pickled checkpoints (``.ckpt``/``.bin``) converted once to safetensors under imesh's cache.

The pickle is opened only with ``torch.load(weights_only=True)`` (see
:mod:`instantmesh_cli.weights_format`); from then on the safetensors copy is
read memory-mapped. Nothing from the Hub is ever executed.
"""

from __future__ import annotations

import os
from pathlib import Path

from instantmesh_cli.hub.download import Progress
from instantmesh_cli.hub.fetch import fetch
from instantmesh_cli.hub.locate import blob_etag
from instantmesh_cli.hub.paths import cache_dir, locked
from instantmesh_cli.settings import HubFile
from instantmesh_cli.weights_format import save_safetensors, tensor_dict, torch_load_weights_only


def _content_key(path: Path, hub_file: HubFile) -> str:
    """A name for the file's content that changes whenever the content does."""
    etag = blob_etag(path)
    if etag:
        return etag
    if hub_file.sha256:
        return hub_file.sha256
    from instantmesh_cli.fileio import files_signature

    return files_signature([path.resolve()])


def weights_file(hub_file: HubFile, *, offline: bool | None = None,
                 weights_dir: str | os.PathLike[str] | None = None,
                 progress: Progress | None = None) -> Path:
    """A safetensors path holding ``hub_file``'s tensors.

    Safetensors files are returned as they are. Pickled ``.ckpt``/``.bin`` files are
    opened once with ``torch.load(weights_only=True)`` (mmap where possible) and
    converted to ``IMESH_CACHE_DIR/converted/…`` keyed by their content id; for a
    Lightning checkpoint that is ``ckpt["state_dict"]`` with its original key names.
    """
    path = fetch(hub_file, offline=offline, weights_dir=weights_dir, progress=progress)
    if not hub_file.is_pickle:
        return path
    key = _content_key(path, hub_file)
    target = (cache_dir() / "converted" / hub_file.repo_id.replace("/", "--") / key
              / (Path(hub_file.filename).stem + ".safetensors"))
    if target.is_file():
        return target
    with locked(target):
        if target.is_file():
            return target
        tensors = tensor_dict(torch_load_weights_only(path), hub_file.filename)
        save_safetensors(tensors, target, {
            "format": "pt",
            "source": f"{hub_file.repo_id}/{hub_file.filename}@{hub_file.revision}",
            "source_id": key,
        })
    return target
