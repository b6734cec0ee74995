"""Mesh from a density grid by marching cubes (the instant-nerf variants).

InstantMesh's NeRF variants evaluate the density on a 256³ grid over [-1, 1]³
(``torch.linspace(-1, 1, 256)`` per axis, ``indexing='ij'``, x first) and run
marching cubes at density 10; vertex = index / (256 - 1) · 2 - 1
(reference/instantmesh.md §4.8).  The official code uses PyMCubes; we use
scikit-image's Lewiner marching cubes, which interpolates vertices on grid edges
the same way and resolves ambiguous cells topologically correctly.

Inside is density > threshold; faces are wound outward (counter-clockwise seen
from outside).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

NERF_GRID_RESOLUTION = 256
NERF_DENSITY_THRESHOLD = 10.0

DensityFn = Callable[[torch.Tensor], torch.Tensor]


def grid_axis(resolution: int = NERF_GRID_RESOLUTION, device: torch.device | str = "cpu") -> torch.Tensor:
    """(resolution,) float32 sample coordinates along each axis."""
    return torch.linspace(-1, 1, resolution, dtype=torch.float32, device=device)


def density_grid(
    density_fn: DensityFn,
    resolution: int = NERF_GRID_RESOLUTION,
    *,
    device: torch.device | str = "cpu",
    chunk_size: int = 1 << 18,
) -> torch.Tensor:
    """Evaluate ``density_fn`` on the grid → (R, R, R) float32 tensor indexed [x][y][z].

    density_fn(points (M, 3) float32 on ``device``) -> (M,) or (M, 1) densities.  Points are
    made chunk by chunk (in x-major order) so the full R³×3 coordinate array never exists.
    """
    if resolution < 2:
        raise ValueError(f"density grid resolution must be at least 2, got {resolution}")
    axis = grid_axis(resolution, device)
    r = resolution
    total = r**3
    out = torch.empty(total, dtype=torch.float32, device=device)
    for start in range(0, total, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, total), device=device)
        pts = torch.stack([axis[idx // (r * r)], axis[(idx // r) % r], axis[idx % r]], dim=1)
        d = density_fn(pts)
        if d.shape not in ((len(idx),), (len(idx), 1)):
            raise ValueError(f"density_fn must return ({len(idx)},) densities, got {tuple(d.shape)}")
        out[start : start + len(idx)] = d.reshape(-1).float()
    return out.reshape(r, r, r)


def marching_cubes(
    density: torch.Tensor | np.ndarray, threshold: float = NERF_DENSITY_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Iso-surface ``density == threshold`` of an (R, R, R) grid spanning [-1, 1]³.

    Returns vertices (N, 3) float32 in [-1, 1] and faces (F, 3) int64, on the density's device
    (CPU for numpy input).  A grid that never crosses the threshold gives an empty mesh.
    """
    from skimage.measure import marching_cubes as sk_marching_cubes

    device = density.device if isinstance(density, torch.Tensor) else torch.device("cpu")
    vol = density.detach().float().cpu().numpy() if isinstance(density, torch.Tensor) else np.asarray(density)
    vol = vol.astype(np.float32, copy=False)
    if vol.ndim != 3 or min(vol.shape) < 2:
        raise ValueError(f"density grid must be 3-D with at least 2 samples per axis, got shape {vol.shape}")
    empty = (torch.zeros((0, 3), dtype=torch.float32, device=device), torch.zeros((0, 3), dtype=torch.long, device=device))
    if not np.isfinite(vol).all():
        raise ValueError("density grid contains NaN or infinite values")
    if not (vol.min() < threshold < vol.max()):
        return empty
    verts, faces, _, _ = sk_marching_cubes(
        vol, level=threshold, gradient_direction="descent", allow_degenerate=False
    )
    if len(faces) == 0:
        return empty
    # skimage winds by the left-hand rule ("descent": the object has the larger values), so its
    # normals point inward for us; reversing each triangle makes them point outward.
    faces = faces[:, ::-1]
    scale = np.asarray(vol.shape, dtype=np.float32) - 1
    verts = verts.astype(np.float32) / scale * 2 - 1
    return (
        torch.from_numpy(np.ascontiguousarray(verts)).to(device),
        torch.from_numpy(np.ascontiguousarray(faces).astype(np.int64)).to(device),
    )
