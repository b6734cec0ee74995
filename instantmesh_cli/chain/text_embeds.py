"""The empty-prompt CLIP-text embedding of a weights folder, kept on disk so that later processes never
load the 340 M-parameter text encoder (nor import transformers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import torch


def text_embeds_cache(folder: "Path", dtype: "torch.dtype", device: "torch.device") -> "Path":
    """Where the empty-prompt embedding of these text-encoder files is kept.

    The key is the identity of every file it depends on (resolved path, size, modification
    time, inode: in the Hugging Face cache a blob's path is its content hash) plus dtype and device
    kind, whose kernels round differently; so a cached embedding is exactly what the encoder
    would compute here, and a changed file is a new key.
    """
    from instantmesh_cli.fileio import files_signature
    from instantmesh_cli.hub import cache_dir
    from instantmesh_cli.multiview.loading import text_encoder_files

    files = [path.resolve() for path in text_encoder_files(folder)]
    return cache_dir() / "text-embeds" / f"{files_signature(files, f'{dtype}:{device.type}')}.safetensors"


def read_text_embeds(path: "Path") -> "torch.Tensor | None":
    """The embedding kept at ``path``; None when there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        from safetensors.torch import load_file

        return load_file(str(path))["embeds"]
    except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
        return None


def write_text_embeds(path: "Path", embeds: "torch.Tensor") -> None:
    """Keep ``embeds`` at ``path``, atomically; a cache that cannot be written is let be."""
    from safetensors.torch import save

    from instantmesh_cli.fileio import write_bytes_atomic

    try:
        write_bytes_atomic(path, save({"embeds": embeds.detach().cpu().contiguous()}))
    except OSError:
        pass  # a read-only cache only costs the next start the text encoder
