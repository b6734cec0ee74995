"""Marching cubes on a density grid (instant-nerf variants)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instantmesh_cli.reconstruction.marching import density_grid, grid_axis, marching_cubes


def blob_density(points: torch.Tensor, centre=(0.2, -0.1, 0.05), radius: float = 0.5) -> torch.Tensor:
    """Density falling linearly with distance: equals 10 exactly on the sphere of ``radius``."""
    d = (points - torch.tensor(centre)).norm(dim=1)
    return 10.0 + 40.0 * (radius - d)


def topology(faces: np.ndarray) -> dict[str, int]:
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    return {
        "bad_edges": int((counts != 2).sum()),
        "misoriented": int((dcounts > 1).sum()),
        "euler": len(np.unique(faces)) - len(counts) + len(faces),
    }


def test_density_grid_layout_and_chunking():
    seen = []

    def fn(p):
        seen.append(len(p))
        return p[:, 0] * 100 + p[:, 1] * 10 + p[:, 2]

    grid = density_grid(fn, 9, chunk_size=50)
    assert grid.shape == (9, 9, 9) and grid.dtype == torch.float32
    assert len(seen) == math.ceil(9**3 / 50)
    a = torch.linspace(-1, 1, 9)
    x, y, z = torch.meshgrid(a, a, a, indexing="ij")  # x first, like the official forward_grid
    assert torch.equal(grid, x * 100 + y * 10 + z)
    assert torch.equal(grid_axis(256), torch.linspace(-1, 1, 256))
    # (M, 1) outputs are accepted; other shapes are refused
    assert torch.equal(density_grid(lambda p: fn(p)[:, None], 9), grid)
    with pytest.raises(ValueError, match="density_fn must return"):
        density_grid(lambda p: p, 9)


def test_sphere_density_gives_watertight_outward_mesh():
    res, radius, centre = 64, 0.5, (0.2, -0.1, 0.05)
    grid = density_grid(lambda p: blob_density(p, centre, radius), res)
    v, f = marching_cubes(grid, 10.0)
    assert v.dtype == torch.float32 and f.dtype == torch.long and len(f) > 1000
    topo = topology(f.numpy())
    assert topo == {"bad_edges": 0, "misoriented": 0, "euler": 2}
    tri = v.double()[f]
    volume = float(torch.linalg.det(tri).sum() / 6)
    assert volume > 0  # outward winding
    assert volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.02)
    # vertex = index / (res - 1) * 2 - 1: the linear density puts them on the sphere
    dist = (v - torch.tensor(centre)).norm(dim=1)
    assert float((dist - radius).abs().max()) < 0.05 * 2 / (res - 1)
    # outward = towards lower density (density > threshold is inside)
    normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
    radial = tri.mean(1) - torch.tensor(centre, dtype=torch.float64)
    assert bool(((normals * radial).sum(1) > 0).all())


def test_numpy_input_and_empty_grids():
    a = np.linspace(-1, 1, 20, dtype=np.float32)
    x, y, z = np.meshgrid(a, a, a, indexing="ij")
    dens = 10.0 + 40.0 * (0.6 - np.sqrt(x**2 + y**2 + z**2))
    v, f = marching_cubes(dens)
    assert len(f) > 0 and float(v.abs().max()) <= 1.0
    for flat in (np.zeros((8, 8, 8)), np.full((8, 8, 8), 50.0)):
        v, f = marching_cubes(flat)
        assert v.shape == (0, 3) and f.shape == (0, 3)
    with pytest.raises(ValueError, match="NaN"):
        marching_cubes(np.full((4, 4, 4), np.nan))
    with pytest.raises(ValueError, match="3-D"):
        marching_cubes(np.zeros((4, 4)))
