"""Reading and writing weight files: pickles only through ``weights_only``, safetensors memory-mapped.

No network here: :mod:`instantmesh_cli.hub` finds the files; this module opens them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from instantmesh_cli.errors import WeightsError

if TYPE_CHECKING:
    import torch


def torch_load_weights_only(path: Path) -> object:
    """A pickled checkpoint opened with ``torch.load(weights_only=True)`` (memory-mapped where possible)."""
    import pickle

    import torch

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"refusing to load {path.name}: it holds more than plain tensors ({first})",
                           hint="only weights_only-safe checkpoints are accepted") from None
    except Exception as exc:  # noqa: BLE001 - the unpickler fails in many ways on junk input
        raise WeightsError(f"{path.name} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
                           .splitlines()[0], hint="delete it and fetch it again") from None


def tensor_dict(obj: object, name: str) -> dict[str, "torch.Tensor"]:
    """The tensors of a loaded checkpoint (a plain state dict, or a Lightning one's ``state_dict``)."""
    import torch

    # Lightning checkpoints keep the weights under "state_dict"; the original key
    # names (e.g. "lrm_generator.…") are kept as they are.
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{name} does not hold a state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{name} holds non-tensor entries (e.g. {bad[0]!r})")
    return obj  # type: ignore[return-value]


def save_safetensors(tensors: dict[str, "torch.Tensor"], target: Path, metadata: dict[str, str]) -> None:
    """Write ``tensors`` to ``target`` atomically."""
    from safetensors.torch import save_file

    from instantmesh_cli.fileio import atomic_path

    # safetensors refuses tensors that share memory (tied weights, views): give
    # each its own contiguous copy where needed.
    seen: set[int] = set()
    flat: dict[str, "torch.Tensor"] = {}
    for key, t in tensors.items():
        ptr = t.untyped_storage().data_ptr()
        shared = ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size()
        seen.add(ptr)
        flat[key] = t.clone() if shared else t.contiguous()
    with atomic_path(target) as tmp:
        save_file(flat, str(tmp), metadata=metadata)


def load_state_dict(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, "torch.Tensor"]:
    """All tensors of a safetensors file, memory-mapped (read lazily from the page cache)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except Exception as exc:  # safetensors raises its own SafetensorError for bad headers
        if type(exc).__name__ in ("SafetensorError", "HeaderTooLarge", "InvalidHeaderDeserialization"):
            raise WeightsError(f"{path.name} is not a valid safetensors file ({exc})",
                               hint="delete it; it is recreated on the next run") from None
        raise
