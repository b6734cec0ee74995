"""The reconstruction stage: views (+ cameras) → triplane → cleaned, vertex-coloured mesh."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from instantmesh_cli.errors import UsageError
from instantmesh_cli.timing import StageTimer

if TYPE_CHECKING:
    import torch

    from instantmesh_cli.mesh import Mesh
    from instantmesh_cli.reconstruction.model import ReconstructionModel

@dataclass
class Reconstruction:
    """What the stage produced: the triplane (for texturing), the mesh and per-step seconds."""

    planes: "torch.Tensor"
    mesh: "Mesh"
    timings: dict[str, float] = field(default_factory=dict)


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
    timer = StageTimer(device)
    with torch.no_grad():
        with timer("planes", timings):
            planes = model.forward_planes(images.to(device), cams)
        with timer("surface", timings):
            mesh = model.extract_mesh(planes, surface_only=surface_only)
    if clean:
        with timer("cleanup", timings):
            mesh = clean_mesh(mesh, min_component_ratio=min_component_ratio)
    return Reconstruction(planes, mesh, timings)
