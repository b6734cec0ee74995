"""Zero123++ input cameras against the numeric table of reference/instantmesh.md §5.3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instantmesh_cli.reconstruction import cameras

# radius 4, fov 30; rows = views in grid-tile order (reference/instantmesh.md §5.3)
TABLE = np.array(
    [
        [-0.5, -0.296198, 0.813798, 3.255191, 0.866025, -0.171010, 0.469846, 1.879385, 0, 0.939693, 0.342020, 1.368081],
        [-1, 0, 0, 0, 0, 0.173648, 0.984808, 3.939231, 0, 0.984808, -0.173648, -0.694593],
        [-0.5, 0.296198, -0.813798, -3.255191, -0.866025, -0.171010, 0.469846, 1.879385, 0, 0.939693, 0.342020, 1.368081],
        [0.5, -0.150384, -0.852869, -3.411474, -0.866025, -0.086824, -0.492404, -1.969616, 0, 0.984808, -0.173648, -0.694593],
        [1, 0, 0, 0, 0, 0.342020, -0.939693, -3.758770, 0, 0.939693, 0.342020, 1.368081],
        [0.5, 0.150384, 0.852869, 3.411474, 0.866025, -0.086824, -0.492404, -1.969616, 0, 0.984808, -0.173648, -0.694593],
    ]
)
INTRINSICS = [1.866025, 1.866025, 0.5, 0.5]


def test_six_view_vectors_match_reference_table():
    cams = cameras.zero123plus_cameras(6, radius=4.0, fov=30.0)
    assert cams.shape == (6, 16) and cams.dtype == torch.float32
    expected = np.concatenate([TABLE, np.tile(INTRINSICS, (6, 1))], axis=1)
    # the table is printed to 6 decimals
    np.testing.assert_allclose(cams.numpy(), expected, atol=1e-5)


def test_four_view_subset_is_views_0_2_4_5():
    four = cameras.zero123plus_cameras(4)
    six = cameras.zero123plus_cameras(6)
    assert four.shape == (4, 16)
    torch.testing.assert_close(four, six[[0, 2, 4, 5]])
    with pytest.raises(ValueError):
        cameras.view_indices(5)


def test_scale_changes_only_translations():
    base = cameras.zero123plus_cameras(6, radius=4.0)
    scaled = cameras.zero123plus_cameras(6, radius=4.0 * 0.8)
    t = [3, 7, 11]
    others = [i for i in range(16) if i not in t]
    torch.testing.assert_close(scaled[:, others], base[:, others])
    torch.testing.assert_close(scaled[:, t], base[:, t] * 0.8)


def test_c2w_geometry():
    c2w = cameras.c2w_matrices(6).double()
    rot = c2w[:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(6, 3, 3), atol=1e-6, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(6, dtype=torch.float64), atol=1e-6)
    pos = c2w[:, :3, 3]
    torch.testing.assert_close(pos.norm(dim=-1), torch.full((6,), 4.0, dtype=torch.float64), atol=1e-5, rtol=0)
    # the camera looks at the origin (-z axis points to it) and image-up has no sideways tilt
    forward = -c2w[:, :3, 2]
    torch.testing.assert_close(forward, -pos / 4.0, atol=1e-6, rtol=0)
    assert torch.all(c2w[:, 2, 1] > 0)  # camera y (up) leans toward world +z
    torch.testing.assert_close(c2w[:, 2, 0], torch.zeros(6, dtype=torch.float64), atol=1e-6, rtol=0)
    # elevations: +20 for even views, -10 for odd
    el = torch.rad2deg(torch.asin(pos[:, 2] / 4.0))
    torch.testing.assert_close(el, torch.tensor([20, -10, 20, -10, 20, -10], dtype=torch.float64), atol=1e-4, rtol=0)


def test_view_matrices_invert_c2w_and_projection_maps_origin_to_centre():
    w2c = cameras.view_matrices(6).double()
    c2w = cameras.c2w_matrices(6).double()
    torch.testing.assert_close(w2c @ c2w, torch.eye(4, dtype=torch.float64).expand(6, 4, 4), atol=1e-5, rtol=0)
    proj = cameras.projection(30.0, 0.1, 1000.0).double()
    t = math.tan(math.radians(15))
    assert proj[0, 0] == pytest.approx(1 / t) and proj[1, 1] == pytest.approx(-1 / t)  # y flipped
    assert proj[2, 2] == pytest.approx(-(1000.1) / 999.9) and proj[2, 3] == pytest.approx(-200.0 / 999.9)
    assert proj[3, 2] == -1
    mvp = cameras.mvp_matrices(6).double()
    origin = mvp @ torch.tensor([0.0, 0, 0, 1], dtype=torch.float64)
    ndc = origin[:, :3] / origin[:, 3:]
    torch.testing.assert_close(ndc[:, :2], torch.zeros(6, 2, dtype=torch.float64), atol=1e-6, rtol=0)
    # a point above the origin (+z world) lands in the upper half of the image: ndc y < 0 after the flip
    top = mvp @ torch.tensor([0.0, 0, 0.5, 1], dtype=torch.float64)
    assert torch.all(top[:, 1] / top[:, 3] < 0)
    # near / far planes map to ndc z -1 / +1 on the optical axis
    zs = proj @ torch.tensor([[0, 0, -0.1, 1], [0, 0, -1000.0, 1]], dtype=torch.float64).T
    torch.testing.assert_close(zs[2] / zs[3], torch.tensor([-1.0, 1.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_view_matrices_four_views_match_subset():
    torch.testing.assert_close(cameras.view_matrices(4), cameras.view_matrices(6)[[0, 2, 4, 5]])
