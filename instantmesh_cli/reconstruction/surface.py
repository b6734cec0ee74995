"""From a triplane to a vertex-coloured mesh (model frame).

Mesh variants (reference/instantmesh.md §4.6-4.8): the SDF head is evaluated at
the undeformed vertices of the FlexiCubes grid (res 128 spanning ±1.05), the
official empty-shape fallback is applied, the deformation head moves the vertices
by ``tanh(d) / (res * 4)``, and FlexiCubes extracts the surface. Unlike the
official code, which runs the deformation head on all 2.1 M vertices and the
weight head on all 2.1 M cubes (~16 GB), we evaluate the deformation only at the
corners of the cubes the surface crosses and the weight head only for those
cubes (FlexiCubes reads nothing else, so the mesh is the same).

NeRF variants (§4.8): density softplus(raw - 1) on a 256³ grid over [-1, 1]³,
marching cubes at level 10.

Vertex colours come from the colour head at the final vertices, clamped to [0, 1].
Everything here runs in float32 whatever the model's compute dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from instantmesh_cli.mesh import Mesh

if TYPE_CHECKING:
    from instantmesh_cli.reconstruction.flexicubes import FlexiCubesGrid

POINT_CHUNK = 2**18  # grid points per triplane query (~250 MB of features at C = 80)
CUBE_CHUNK = 2**15  # surface cubes per weight-head call (8 corners each)
DEFORMATION_MULTIPLIER = 4.0

_GRIDS: dict[tuple[int, float, str], "FlexiCubesGrid"] = {}


def flexicubes_grid(res: int, scale: float, device: torch.device) -> "FlexiCubesGrid":
    """The (cached) FlexiCubes grid for this resolution, scale and device."""
    from instantmesh_cli.reconstruction.flexicubes import FlexiCubesGrid

    key = (res, scale, str(device))
    if key not in _GRIDS:
        _GRIDS[key] = FlexiCubesGrid(res, scale, device=device)
    return _GRIDS[key]



class TriplaneField(Protocol):
    """What surface extraction needs of a reconstruction model: its config, decoder heads and
    triplane queries (``ReconstructionModel`` is one; naming the protocol here keeps the model,
    which calls these functions, the only one of the two that knows the other)."""

    cfg: Any
    decoder: Any

    def features(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor: ...

    def query_color(self, planes: torch.Tensor, points: torch.Tensor, chunk: int = ...) -> torch.Tensor: ...


def _features(model: "TriplaneField", planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(M, 3) points → (M, 3C) float32 features of sample 0."""
    return model.features(planes, points[None].to(planes.dtype))[0]


@torch.no_grad()
def grid_sdf(model: "TriplaneField", planes: torch.Tensor, grid: "FlexiCubesGrid", chunk: int = POINT_CHUNK) -> torch.Tensor:
    """Raw SDF (V,) at the undeformed grid vertices."""
    verts = grid.vertices
    out = torch.empty(verts.shape[0], dtype=torch.float32, device=verts.device)
    for i in range(0, verts.shape[0], chunk):
        out[i : i + chunk] = model.decoder.net_sdf(_features(model, planes, verts[i : i + chunk])).squeeze(-1)
    return out


def apply_empty_shape_fallback(sdf: torch.Tensor, grid: "FlexiCubesGrid") -> tuple[torch.Tensor, bool]:
    """InstantMesh's fix for an SDF without a sign change inside the grid (§4.7 step 4).

    If the interior vertices (all but the outermost layer) are all >= 0 or all <= 0,
    the centre vertex becomes ``1 - min(sdf)`` and the vertices of the two outermost
    layers ``-1 - max(sdf)``; all other values are kept. Returns (sdf, applied).
    """
    s = grid.side
    interior = sdf.reshape(s, s, s)[1:-1, 1:-1, 1:-1]
    if bool((interior > 0).any()) and bool((interior < 0).any()):
        return sdf, False
    update = torch.zeros_like(sdf)
    update[grid.center_vertex_index] += 1.0 - sdf.min()
    update[grid.boundary_vertex_mask()] += -1.0 - sdf.max()
    return torch.where(update == 0, sdf, update), True


@torch.no_grad()
def deformed_vertices(
    model: "TriplaneField", planes: torch.Tensor, grid: "FlexiCubesGrid", vertex_ids: torch.Tensor, chunk: int = POINT_CHUNK
) -> torch.Tensor:
    """Grid vertices (V, 3) with the predicted deformation applied at ``vertex_ids`` (the only ones FlexiCubes reads)."""
    verts = grid.vertices
    out = verts.clone()
    step = 1.0 / (grid.res * DEFORMATION_MULTIPLIER)
    for i in range(0, vertex_ids.shape[0], chunk):
        ids = vertex_ids[i : i + chunk]
        raw = model.decoder.net_deformation(_features(model, planes, verts[ids])).float()
        out[ids] = verts[ids] + step * torch.tanh(raw)
    return out


def cube_weight_fn(model: "TriplaneField", planes: torch.Tensor, grid: "FlexiCubesGrid"):
    """The callback FlexiCubes calls with the surface cubes: raw weights (S, 21) from the 8 corner features."""

    @torch.no_grad()
    def weights(cube_ids: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        n = corners.shape[0]
        # Features at the undeformed corners, concatenated in FlexiCubes corner order.
        feats = _features(model, planes, grid.vertices[corners.reshape(-1)])
        return model.decoder.cube_weights(feats.reshape(n, -1)).float()

    return weights


def vertex_colors(model: "TriplaneField", planes: torch.Tensor, vertices: torch.Tensor) -> np.ndarray:
    """Colours (N, 3) in [0, 1] from the colour head at ``vertices`` (N, 3)."""
    if vertices.shape[0] == 0:
        return np.zeros((0, 3), np.float32)
    with torch.no_grad():
        rgb = model.query_color(planes, vertices[None].to(planes.dtype), chunk=POINT_CHUNK)[0]
    return rgb.clamp(0, 1).float().cpu().numpy()


@torch.no_grad()
def all_cube_weights(model: "TriplaneField", planes: torch.Tensor, grid: "FlexiCubesGrid", chunk: int = CUBE_CHUNK) -> torch.Tensor:
    """Raw weights (res³, 21) of every cube, as the official code computes them (chunked, not all at once)."""
    weight_fn = cube_weight_fn(model, planes, grid)
    out = torch.empty(grid.n_cubes, 21, dtype=torch.float32, device=planes.device)
    for i in range(0, grid.n_cubes, chunk):
        ids = torch.arange(i, min(i + chunk, grid.n_cubes), device=planes.device)
        out[i : i + chunk] = weight_fn(ids, grid.cube_corners(ids))
    return out


@torch.no_grad()
def flexicubes_mesh(model: "TriplaneField", planes: torch.Tensor, *, surface_only: bool = True) -> Mesh:
    """FlexiCubes surface of the SDF head (mesh variants), vertex colours from the colour head.

    ``surface_only=False`` evaluates the deformation at every vertex and the weight
    head on every cube, as the official code does: the same mesh, much more work
    (kept as the benchmark's baseline).
    """
    from instantmesh_cli.reconstruction import flexicubes

    planes = planes.float()
    cfg = model.cfg
    grid = flexicubes_grid(cfg.grid_res, cfg.grid_scale, planes.device)
    sdf, fallback = apply_empty_shape_fallback(grid_sdf(model, planes, grid), grid)
    if surface_only:
        cubes = grid.surface_cubes(sdf)
        corner_ids = torch.unique(grid.cube_corners(cubes).reshape(-1))
        verts = deformed_vertices(model, planes, grid, corner_ids)
        v, f = flexicubes.extract(grid, sdf, verts, cube_weight_fn(model, planes, grid), chunk_size=CUBE_CHUNK)
    else:
        all_ids = torch.arange(grid.vertices.shape[0], device=planes.device)
        verts = deformed_vertices(model, planes, grid, all_ids)
        v, f = flexicubes.extract(grid, sdf, verts, weights=all_cube_weights(model, planes, grid), chunk_size=CUBE_CHUNK)
    return Mesh(
        v.cpu().numpy(),
        f.cpu().numpy(),
        vertex_colors=vertex_colors(model, planes, v),
        metadata={"extractor": "flexicubes", "grid_res": cfg.grid_res, "empty_shape_fallback": fallback},
    )


@torch.no_grad()
def density_mesh(model: "TriplaneField", planes: torch.Tensor) -> Mesh:
    """Marching cubes on the density field (NeRF variants), vertex colours from the colour head."""
    from instantmesh_cli.reconstruction import marching

    planes = planes.float()
    cfg = model.cfg
    res, level = cfg.mesh_resolution, cfg.mesh_threshold
    density = marching.density_grid(
        lambda pts: model.decoder.density(_features(model, planes, pts)), res, device=planes.device, chunk_size=POINT_CHUNK
    )
    v, f = marching.marching_cubes(density, level)
    return Mesh(
        v.cpu().numpy(),
        f.cpu().numpy(),
        vertex_colors=vertex_colors(model, planes, v.to(planes.device)),
        metadata={"extractor": "marching_cubes", "mesh_resolution": res, "mesh_threshold": level},
    )
