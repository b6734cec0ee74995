"""The fixed cameras of the Zero123++ v1.2 views, as InstantMesh uses them.

Facts (reference/instantmesh.md §5.3, §4.10):

- Six views at azimuths 30, 90, ..., 330 degrees and alternating elevations
  +20 / -10 degrees, in the tile order of the 3x2 grid (row-major). The four-view
  mode keeps views 0, 2, 4, 5.
- Cameras sit on a sphere of radius ``4 * scale`` around the origin, look at the
  origin, and use the world's +z as "up". Camera axes follow OpenGL: x right,
  y up, z backward (pointing from the origin to the camera).
- The 16-value vector the encoder sees is the first 12 entries of the row-major
  camera-to-world matrix (rows 0-2 of [R | t]) followed by the normalised
  intrinsics fx, fy, cx, cy for a 30 degree field of view.
- Rendering the mesh uses world-to-camera = inverse(camera-to-world) and an OpenGL
  projection with fovy 30, near 0.1, far 1000 and a flipped y axis, so that image
  row 0 is the top of the picture.

Everything is computed in float64 and returned as float32.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

AZIMUTHS_DEG: tuple[float, ...] = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
ELEVATIONS_DEG: tuple[float, ...] = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
FOUR_VIEW_INDICES: tuple[int, ...] = (0, 2, 4, 5)
DEFAULT_RADIUS = 4.0
DEFAULT_FOV_DEG = 30.0
NEAR, FAR = 0.1, 1000.0


def view_indices(views: int = 6) -> tuple[int, ...]:
    """Which of the six Zero123++ views a ``views``-view reconstruction uses."""
    if views == 6:
        return tuple(range(6))
    if views == 4:
        return FOUR_VIEW_INDICES
    raise ValueError(f"views must be 4 or 6, not {views}")


def camera_positions(azimuths_deg: Sequence[float], elevations_deg: Sequence[float], radius: float) -> torch.Tensor:
    """(V, 3) points on the sphere: r (cos e cos a, cos e sin a, sin e); azimuth 0 on +x, +z up."""
    az = torch.deg2rad(torch.tensor(azimuths_deg, dtype=torch.float64))
    el = torch.deg2rad(torch.tensor(elevations_deg, dtype=torch.float64))
    return radius * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1)


def look_at_origin(positions: torch.Tensor) -> torch.Tensor:
    """(V, 4, 4) OpenGL camera-to-world matrices of cameras at ``positions`` looking at the origin, +z up."""
    positions = positions.to(torch.float64)
    z_axis = torch.nn.functional.normalize(positions, dim=-1)  # backward: origin -> camera
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(z_axis)
    x_axis = torch.nn.functional.normalize(torch.linalg.cross(up, z_axis, dim=-1), dim=-1)
    y_axis = torch.nn.functional.normalize(torch.linalg.cross(z_axis, x_axis, dim=-1), dim=-1)
    c2w = torch.zeros(positions.shape[0], 4, 4, dtype=torch.float64)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x_axis, y_axis, z_axis, positions
    c2w[:, 3, 3] = 1.0
    return c2w


def _c2w64(views: int, radius: float) -> torch.Tensor:
    idx = list(view_indices(views))
    az = [AZIMUTHS_DEG[i] for i in idx]
    el = [ELEVATIONS_DEG[i] for i in idx]
    return look_at_origin(camera_positions(az, el, radius))


def c2w_matrices(views: int = 6, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """(V, 4, 4) camera-to-world matrices of the Zero123++ views (OpenGL camera axes)."""
    return _c2w64(views, radius).float()


def view_matrices(views: int = 6, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """(V, 4, 4) world-to-camera matrices, inverse(c2w), as used to render the mesh at the input views."""
    return torch.linalg.inv(_c2w64(views, radius)).float()


def normalized_intrinsics(fov_deg: float = DEFAULT_FOV_DEG) -> torch.Tensor:
    """(3, 3) intrinsics in units of the image size: f = 0.5 / tan(fov / 2), principal point at the centre."""
    f = 0.5 / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float32)


def zero123plus_cameras(views: int = 6, radius: float = DEFAULT_RADIUS, fov: float = DEFAULT_FOV_DEG) -> torch.Tensor:
    """(V, 16) camera vectors fed to the encoder: c2w rows 0-2 (row-major) + fx, fy, cx, cy."""
    c2w = _c2w64(views, radius)
    k = normalized_intrinsics(fov).to(torch.float64)
    intr = torch.tensor([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], dtype=torch.float64).expand(c2w.shape[0], 4)
    return torch.cat([c2w[:, :3, :].reshape(-1, 12), intr], dim=-1).float()


def projection(fovy: float = DEFAULT_FOV_DEG, near: float = NEAR, far: float = FAR) -> torch.Tensor:
    """(4, 4) OpenGL perspective projection with the y axis flipped (image row 0 = top).

    clip = P @ [x_cam, y_cam, z_cam, 1]; the camera looks down -z.
    """
    t = math.tan(math.radians(fovy) / 2)
    return torch.tensor(
        [
            [1.0 / t, 0.0, 0.0, 0.0],
            [0.0, -1.0 / t, 0.0, 0.0],
            [0.0, 0.0, -(far + near) / (far - near), -(2.0 * far * near) / (far - near)],
            [0.0, 0.0, -1.0, 0.0],
        ],
        dtype=torch.float32,
    )


def mvp_matrices(
    views: int = 6, radius: float = DEFAULT_RADIUS, fovy: float = DEFAULT_FOV_DEG, near: float = NEAR, far: float = FAR
) -> torch.Tensor:
    """(V, 4, 4) projection @ world-to-camera: world points to clip space for each view."""
    return (projection(fovy, near, far).to(torch.float64) @ torch.linalg.inv(_c2w64(views, radius))).float()
