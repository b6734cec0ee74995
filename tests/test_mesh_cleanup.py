"""Mesh clean-up: welding, degenerate/duplicate faces, floating pieces, outward orientation."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from instantmesh_cli import mesh as M


def _sphere(subdiv=3, radius=1.0, center=(0, 0, 0)):
    s = trimesh.creation.icosphere(subdiv, radius=radius)
    return np.asarray(s.vertices, np.float32) + np.float32(center), np.asarray(s.faces, np.int64)


def _colored(v, f):
    return M.Mesh(v, f, vertex_colors=(v - v.min(0)) / (v.max(0) - v.min(0)))


def test_clean_mesh_keeps_a_clean_mesh_unchanged():
    v, f = _sphere()
    m = _colored(v, f)
    out = M.clean_mesh(m)
    np.testing.assert_array_equal(out.vertices, m.vertices)
    np.testing.assert_array_equal(out.faces, m.faces)
    np.testing.assert_array_equal(out.vertex_colors, m.vertex_colors)
    assert "cleanup" not in out.metadata


def test_clean_mesh_repairs_everything_at_once():
    v, f = _sphere()
    sv, sf = _sphere(1, radius=0.05, center=(3, 0, 0))  # a floater
    n = len(v)
    # duplicate the first 10 vertices and point 30 faces at the copies (a seam that is not one)
    dup = v[:10]
    f2 = f.copy()
    for i in range(30):
        for j in range(3):
            if f2[i, j] < 10:
                f2[i, j] = n + len(sv) + f2[i, j]
    verts = np.concatenate([v, sv, dup])
    faces = np.concatenate([
        f2[:, ::-1],  # the whole sphere inside out
        sf + n,
        f[:5],  # 5 duplicate faces (with the original winding)
        [[0, 0, 1], [1, 2, 2]],  # index-degenerate
    ])
    m = _colored(verts, faces)
    out = M.clean_mesh(m)
    tm = trimesh.Trimesh(out.vertices, out.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent
    assert M.signed_volume(out) > 0  # flipped outward
    assert out.num_vertices == len(v) and out.num_faces == len(f)
    assert out.vertices[:, 0].max() < 1.01  # floater gone
    notes = out.metadata["cleanup"]
    assert notes["merged_vertices"] == 10
    assert notes["degenerate_faces"] == 2
    assert notes["duplicate_faces"] == 5
    assert notes["removed_components"] == 1
    assert notes["flipped_components"] == 1
    assert out.vertex_colors.shape == (out.num_vertices, 3)
    # colours followed their vertices
    idx = np.argmin(np.linalg.norm(out.vertices[:, None] - v[None, :50], axis=2), axis=0)
    np.testing.assert_allclose(out.vertex_colors[idx], m.vertex_colors[:50], atol=1e-6)


def test_small_components_by_area_or_faces_and_ratio_zero_keeps_all():
    a_v, a_f = _sphere(3)
    b_v, b_f = _sphere(3, radius=0.3, center=(3, 0, 0))  # same face count, 9% of the area
    m = M.Mesh(np.concatenate([a_v, b_v]), np.concatenate([a_f, b_f + len(a_v)]))
    assert M.remove_small_components(m, 0.1, "area").num_faces == len(a_f)
    assert M.remove_small_components(m, 0.05, "area").num_faces == 2 * len(a_f)
    assert M.remove_small_components(m, 0.5, "faces").num_faces == 2 * len(a_f)
    assert M.clean_mesh(m, min_component_ratio=0).num_faces == 2 * len(a_f)
    with pytest.raises(ValueError):
        M.remove_small_components(m, 0.1, "volume")


def test_each_piece_is_oriented_on_its_own():
    a_v, a_f = _sphere(2)
    b_v, b_f = _sphere(2, radius=0.8, center=(3, 0, 0))
    m = M.Mesh(np.concatenate([a_v, b_v]), np.concatenate([a_f, (b_f + len(a_v))[:, ::-1]]))
    out = M.orient_outward(m)
    assert out.metadata["cleanup"]["flipped_components"] == 1
    for piece in trimesh.Trimesh(out.vertices, out.faces, process=False).split(only_watertight=False):
        assert piece.volume > 0


def test_inconsistent_winding_is_repaired():
    v, f = _sphere(2)
    f = f.copy()
    f[::7] = f[::7, ::-1]  # every 7th face flipped
    out = M.orient_outward(M.Mesh(v, f))
    tm = trimesh.Trimesh(out.vertices, out.faces, process=False)
    assert tm.is_winding_consistent and tm.volume > 0
    assert out.metadata["cleanup"]["fixed_winding"]


def test_empty_mesh_passes_through():
    m = M.Mesh(np.zeros((0, 3)), np.zeros((0, 3)))
    assert M.clean_mesh(m).num_faces == 0


def test_uv_seams_are_not_welded():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)
    uv = np.array([[0, 0], [1, 0], [0, 1], [0.5, 0.5]], np.float32)
    f = np.array([[0, 1, 2], [3, 1, 2]])
    tex = np.zeros((4, 4, 3), np.uint8)
    m = M.Mesh(v, f, uv=uv, texture=tex)
    assert M.merge_duplicate_vertices(m).num_vertices == 4
    m2 = M.Mesh(v, f, uv=np.array([[0, 0], [1, 0], [0, 1], [0, 0]], np.float32), texture=tex)
    assert M.merge_duplicate_vertices(m2).num_vertices == 3
