"""UV atlases (box projection, xatlas) and decimation before unwrapping."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from instantmesh_cli.errors import UsageError
from instantmesh_cli.mesh import Mesh, decimate, face_areas
from instantmesh_cli.texture.bake import uv_clip
from instantmesh_cli.texture.raster_torch import TorchRasterizer
from instantmesh_cli.texture.uv import box_unwrap, default_padding, face_adjacency, unwrap


def sphere(subdivisions=3, radius=0.8):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int64)


def bumpy_blob(res=40, seed=0):
    """A closed, noisy marching-cubes surface (like an extracted mesh) with a thin handle."""
    from skimage.measure import marching_cubes

    g = np.linspace(-1, 1, res)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    rng = np.random.default_rng(seed)
    body = np.sqrt(x**2 + (1.4 * y) ** 2 + z**2) - 0.6
    handle = np.sqrt((np.sqrt((x - 0.55) ** 2 + z**2) - 0.3) ** 2 + y**2) - 0.08  # a torus: genus 1
    sdf = np.minimum(body, handle) + 0.01 * rng.standard_normal(body.shape)
    v, f, _, _ = marching_cubes(sdf, 0.0)
    return (v / (res - 1) * 2 - 1).astype(np.float32), f.astype(np.int64)


def chart_ids(atlas) -> np.ndarray:
    """Chart of each face: connected components of faces sharing UV vertices."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = atlas.faces
    n = len(atlas.uv)
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    _, labels = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False)
    return labels[f[:, 0]]


def coverage_counts(uv: np.ndarray, faces: np.ndarray, size: int, strict: bool = False) -> np.ndarray:
    """(size, size) number of UV triangles containing each texel centre (row 0 at v = 0), brute force.

    ``strict``: only centres strictly inside (a centre on an edge shared by two triangles
    of one chart is in both, which is no overlap).
    """
    t = uv[faces].astype(np.float64) * size - 0.5  # texel-centre units
    lo = np.clip(np.ceil(t.min(1)), 0, size - 1).astype(np.int64)
    hi = np.clip(np.floor(t.max(1)), 0, size - 1).astype(np.int64)
    n = np.maximum(hi - lo + 1, 0)
    per = n[:, 0] * n[:, 1]
    tri = np.repeat(np.arange(len(t)), per)
    k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    x = lo[tri, 0] + k % n[tri, 0]
    y = lo[tri, 1] + k // n[tri, 0]
    a, b, c = t[tri, 0], t[tri, 1], t[tri, 2]

    def edge(p, q):
        return (q[:, 0] - p[:, 0]) * (y - p[:, 1]) - (q[:, 1] - p[:, 1]) * (x - p[:, 0])

    e0, e1, e2 = edge(b, c), edge(c, a), edge(a, b)
    eps = 1e-9 * np.abs(e0 + e1 + e2) if strict else 0.0
    inside = ((e0 >= eps) & (e1 >= eps) & (e2 >= eps)) | ((e0 <= -eps) & (e1 <= -eps) & (e2 <= -eps))
    return np.bincount(y[inside] * size + x[inside], minlength=size * size).reshape(size, size)


def check_atlas(vertices, faces, atlas, size):
    # Same faces, same order, over UV copies of the original vertices.
    np.testing.assert_array_equal(atlas.vertex_ids[atlas.faces], faces)
    assert atlas.uv.dtype == np.float32 and atlas.uv.min() >= 0 and atlas.uv.max() <= 1
    uvf = atlas.uv[atlas.faces].astype(np.float64)
    signed = 0.5 * ((uvf[:, 1, 0] - uvf[:, 0, 0]) * (uvf[:, 2, 1] - uvf[:, 0, 1])
                    - (uvf[:, 2, 0] - uvf[:, 0, 0]) * (uvf[:, 1, 1] - uvf[:, 0, 1]))
    # No overlaps: no texel centre lies inside two UV triangles (counted independently of the rasterizer).
    assert coverage_counts(atlas.uv, atlas.faces, size, strict=True).max() == 1
    counts = coverage_counts(atlas.uv, atlas.faces, size)
    rast = TorchRasterizer().rasterize(uv_clip(torch.from_numpy(atlas.uv)), torch.from_numpy(atlas.faces), (size, size))
    np.testing.assert_array_equal(rast[0, ..., 3].numpy() > 0, counts > 0)
    assert counts.sum() == pytest.approx(float(np.abs(signed).sum()) * size * size, rel=0.05)
    # Gutters: texels of different charts are never neighbours (3x3).
    charts = chart_ids(atlas)
    tid = rast[0, ..., 3].long().numpy() - 1
    cid = np.where(tid >= 0, charts[np.maximum(tid, 0)], -1)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = cid[max(dy, 0):, max(dx, 0): cid.shape[1] + min(dx, 0)]
        b = cid[: cid.shape[0] - dy, max(-dx, 0): cid.shape[1] - max(dx, 0)]
        clash = (a >= 0) & (b >= 0) & (a != b)
        assert not clash.any()
    return signed


def test_face_adjacency_of_a_closed_mesh():
    v, f = sphere(2)
    pairs = face_adjacency(f)
    assert len(pairs) == len(f) * 3 // 2  # every edge shared by exactly two faces
    assert np.bincount(pairs.reshape(-1), minlength=len(f)).tolist() == [3] * len(f)


def test_box_unwrap_sphere():
    v, f = sphere(4)
    atlas = unwrap(v, f, "box", texture_size=512)
    assert atlas.method == "box" and atlas.charts >= 6
    signed = check_atlas(v, f, atlas, 512)
    assert (signed > 0).all()  # charts are never mirrored
    # Texel density is uniform up to the projection's foreshortening (cos >= cos 75deg).
    ratio = np.abs(signed) / face_areas(Mesh(v, f))
    assert ratio.max() / ratio.min() < 1 / np.cos(np.radians(75)) + 1e-6
    assert atlas.utilization > 0.4


def test_box_unwrap_noisy_genus_one_surface():
    v, f = bumpy_blob()
    atlas = box_unwrap(v.astype(np.float64), f, texture_size=1024, padding=default_padding(1024))
    check_atlas(v, f, atlas, 1024)
    assert atlas.charts < len(f) / 4  # neighbour voting keeps speckle charts rare


def test_xatlas_unwrap_is_valid_too():
    v, f = sphere(3)
    atlas = unwrap(v, f, "xatlas", texture_size=512)
    assert atlas.method == "xatlas" and atlas.charts >= 1
    check_atlas(v, f, atlas, 512)


def test_unknown_uv_method():
    v, f = sphere(1)
    with pytest.raises(UsageError):
        unwrap(v, f, "cylinder")


def test_decimate_keeps_the_surface():
    v, f = sphere(5, 0.8)  # 20480 faces
    mesh = Mesh(v, f, vertex_colors=(v + 1) / 2)
    out = decimate(mesh, 3000)
    assert 2500 <= out.num_faces <= 3000
    r = np.linalg.norm(out.vertices, axis=1)
    assert np.abs(r - 0.8).max() < 0.01
    assert out.metadata["decimation"]["faces_before"] == 20480
    # Colours follow the nearest original vertex.
    np.testing.assert_allclose(out.vertex_colors, (out.vertices + 1) / 2, atol=0.02)
    assert decimate(mesh, 30000) is mesh  # already below the budget
    with pytest.raises(ValueError):
        decimate(Mesh(v, f, uv=np.zeros((len(v), 2)), texture=np.zeros((4, 4, 3), np.uint8)), 100)


def test_triangle_soup_narrows_gutters_or_fails_clearly():
    v, f = sphere(3)
    soup_v = v[f].reshape(-1, 3)
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)  # every face its own chart
    atlas = unwrap(soup_v, soup_f, "box", texture_size=256)
    assert atlas.charts == len(f)
    check_atlas(soup_v, soup_f, atlas, 256)
    with pytest.raises(UsageError, match="texture atlas"):
        unwrap(soup_v, soup_f, "box", texture_size=32)
