"""The reconstruction stage: views (+ cameras) → triplane → cleaned, vertex-coloured mesh.

Also where ``--device`` / ``--dtype`` are turned into torch values for this stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from instantmesh_cli.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch

    from instantmesh_cli.mesh import Mesh
    from instantmesh_cli.reconstruction.model import ReconstructionModel

DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")


def resolve_device(name: str = "auto") -> "torch.device":
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda``/``cuda:N``/``cpu``/``mps`` as given (checked)."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was requested but is not available", hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("MPS was requested but is not available", hint="use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def resolve_dtype(name: str, device: "torch.device") -> "torch.dtype":
    """Compute precision of the encoder + transformer. ``auto``: fp16 on CUDA, fp32 elsewhere."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        raise UsageError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPE_NAMES)}")
    dtype = table[name]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU does not support bf16", hint="use --dtype fp16")
    return dtype


@dataclass
class Reconstruction:
    """What the stage produced: the triplane (for texturing), the mesh and per-step seconds."""

    planes: "torch.Tensor"
    mesh: "Mesh"
    timings: dict[str, float] = field(default_factory=dict)


def _sync(device: "torch.device") -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reconstruct(
    model: "ReconstructionModel",
    images: "torch.Tensor",
    *,
    scale: float = 1.0,
    clean: bool = True,
    min_component_ratio: float = 0.02,
    surface_only: bool = True,
) -> Reconstruction:
    """images (1, V, 3, H, W) in [0, 1], V = 6 (all views) or 4 (views 0, 2, 4, 5) → mesh in the model frame.

    ``scale`` multiplies the camera distance (4.0): below 1 the object comes out smaller
    (the official ``--scale``, for objects that get cropped by the [-1, 1] box).
    """
    import torch

    from instantmesh_cli.mesh import clean_mesh
    from instantmesh_cli.reconstruction.cameras import DEFAULT_RADIUS, zero123plus_cameras

    if not scale > 0:
        raise UsageError(f"--scale must be positive, got {scale}")
    views = images.shape[1]
    device = model.device
    timings: dict[str, float] = {}
    cams = zero123plus_cameras(views, radius=DEFAULT_RADIUS * scale)[None].to(device)
    # no_grad rather than inference_mode: texture refinement later optimises these planes.
    with torch.no_grad():
        _sync(device)
        t0 = time.perf_counter()
        planes = model.forward_planes(images.to(device), cams)
        _sync(device)
        t1 = time.perf_counter()
        mesh = model.extract_mesh(planes, surface_only=surface_only)
        _sync(device)
        t2 = time.perf_counter()
    timings["planes"] = t1 - t0
    timings["surface"] = t2 - t1
    if clean:
        mesh = clean_mesh(mesh, min_component_ratio=min_component_ratio)
        timings["cleanup"] = time.perf_counter() - t2
    return Reconstruction(planes, mesh, timings)
