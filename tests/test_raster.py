"""Rasterizer backends: the torch reference against analytic answers, backend choice, nvdiffrast on CUDA."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

from instantmesh_cli.errors import DeviceError, UsageError
from instantmesh_cli.reconstruction.cameras import look_at_origin, projection, zero123plus_cameras
from instantmesh_cli.texture.raster import get_rasterizer
from instantmesh_cli.texture.raster_torch import TorchRasterizer
from instantmesh_cli.texture.render import clip_positions, mvp_from_cameras, render, surface_samples

CUDA = torch.cuda.is_available()


def icosphere(subdivisions: int = 3, radius: float = 1.0):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return torch.tensor(s.vertices, dtype=torch.float32), torch.tensor(s.faces, dtype=torch.int64)


def pixel_centres(h: int, w: int):
    """NDC x, y of every pixel centre (nvdiffrast's convention: row 0 at y = -1)."""
    ys = (2 * torch.arange(h) + 1) / h - 1
    xs = (2 * torch.arange(w) + 1) / w - 1
    return torch.meshgrid(ys, xs, indexing="ij")


def test_single_triangle_barycentrics_depth_and_ids():
    pos = torch.tensor([[[-0.8, -0.6, 0.2, 1.0], [0.7, -0.5, 0.4, 1.0], [0.1, 0.9, -0.3, 1.0]]])
    tri = torch.tensor([[0, 1, 2]])
    rast = TorchRasterizer().rasterize(pos, tri, (32, 40))
    assert rast.shape == (1, 32, 40, 4)
    y, x = pixel_centres(32, 40)
    p = pos[0, :, :2]
    # Analytic barycentrics of every pixel centre.
    mat = torch.stack([p[0] - p[2], p[1] - p[2]], dim=1)  # columns
    rhs = torch.stack([x - p[2, 0], y - p[2, 1]], dim=-1)
    uv = torch.linalg.solve(mat, rhs.reshape(-1, 2).T).T.reshape(32, 40, 2)
    inside = (uv[..., 0] >= 1e-5) & (uv[..., 1] >= 1e-5) & (uv.sum(-1) <= 1 - 1e-5)
    strictly_out = (uv[..., 0] < -1e-5) | (uv[..., 1] < -1e-5) | (uv.sum(-1) > 1 + 1e-5)
    covered = rast[0, ..., 3] > 0
    assert covered[inside].all() and not covered[strictly_out].any()
    assert inside.sum() > 200
    torch.testing.assert_close(rast[0, ..., :2][inside], uv[inside], atol=1e-5, rtol=0)
    z = uv[..., 0] * 0.2 + uv[..., 1] * 0.4 + (1 - uv.sum(-1)) * -0.3
    torch.testing.assert_close(rast[0, ..., 2][inside], z[inside], atol=1e-5, rtol=0)
    assert (rast[0, ..., 3][covered] == 1).all()
    assert (rast[0][~covered] == 0).all()


def test_nearest_surface_wins_whatever_the_order():
    big = [[-1.0, -1.0], [1.0, -1.0], [0.0, 1.0]]
    near = torch.tensor([[x, y, -0.5, 1.0] for x, y in big])
    far = torch.tensor([[x, y, 0.5, 1.0] for x, y in big])
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]])
    r = TorchRasterizer()
    a = r.rasterize(torch.cat([near, far])[None], tri, (16, 16))
    b = r.rasterize(torch.cat([far, near])[None], tri, (16, 16))
    hit = a[0, ..., 3] > 0
    assert hit.sum() > 50
    assert (a[0, ..., 3][hit] == 1).all() and (b[0, ..., 3][hit] == 2).all()
    torch.testing.assert_close(a[0, ..., 2][hit], torch.full_like(a[0, ..., 2][hit], -0.5))


def test_perspective_correct_interpolation_lands_on_the_pixel_ray():
    """Interpolated 3-D points of a tilted quad re-project onto their own pixel centres and lie on the quad."""
    verts = torch.tensor([[-0.6, -0.5, 0.7], [0.6, -0.5, -0.8], [0.6, 0.5, -0.8], [-0.6, 0.5, 0.7]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    c2w = look_at_origin(torch.tensor([[3.0, 0.5, 1.0]]))
    mvp = projection(30.0) @ torch.linalg.inv(c2w.float())
    r = TorchRasterizer()
    s = surface_samples(r, verts, faces, mvp, (48, 64))
    assert s.points.shape[0] > 300
    clip = clip_positions(s.points, mvp)[0]
    ndc = clip[:, :2] / clip[:, 3:]
    y, x = pixel_centres(48, 64)
    expect = torch.stack([x.reshape(-1)[s.pixels], y.reshape(-1)[s.pixels]], dim=1)
    torch.testing.assert_close(ndc, expect, atol=2e-4, rtol=0)
    # Points lie on the plane through the quad (normal from two edges).
    n = torch.linalg.cross(verts[1] - verts[0], verts[3] - verts[0])
    assert ((s.points - verts[0]) @ n).abs().max() < 1e-4
    # A linear function of position is reproduced exactly (perspective-correct, not screen-linear).
    attr = verts @ torch.tensor([1.0, -2.0, 0.5])
    got = r.interpolate(attr[:, None], s.rast, faces).reshape(-1)[s.pixels]
    torch.testing.assert_close(got, s.points @ torch.tensor([1.0, -2.0, 0.5]), atol=1e-4, rtol=0)


def test_sphere_silhouette_area_at_the_six_cameras():
    radius, dist = 0.8, 4.0
    v, f = icosphere(4, radius)
    mvp = mvp_from_cameras(zero123plus_cameras(6, radius=dist))
    img, mask = render(TorchRasterizer(), v, f, mvp, (160, 160), vertex_colors=(v + 1) / 2)
    # Silhouette of a sphere: a disk of NDC radius tan(asin(r/d)) / tan(fov/2).
    ndc_r = math.tan(math.asin(radius / dist)) / math.tan(math.radians(15))
    expected = math.pi * (ndc_r * 80) ** 2
    counts = mask.sum(dim=(1, 2)).float()
    assert torch.allclose(counts, torch.full_like(counts, expected), rtol=0.02)
    # Image row 0 is the top: the top of the sphere (+z, blue channel high) is in the upper half.
    blue = img[..., 2]
    assert (blue[:, :60][mask[:, :60]].mean() > blue[:, 100:][mask[:, 100:]].mean() + 0.2).item()
    assert (img[~mask] == 1.0).all()  # white background


def test_interpolate_batch_and_shared_attributes():
    v, f = icosphere(2, 0.7)
    mvp = mvp_from_cameras(zero123plus_cameras(6))
    r = TorchRasterizer()
    rast = r.rasterize(clip_positions(v, mvp), f, (40, 40))
    shared = r.interpolate(v, rast, f)
    per_view = r.interpolate(v[None].expand(6, -1, -1), rast, f)
    torch.testing.assert_close(shared, per_view)
    hit = rast[..., 3] > 0
    # Interpolated points lie (nearly) on the sphere: between the inscribed faces and the radius.
    radii = shared[hit].norm(dim=-1)
    assert radii.max() <= 0.7 + 1e-5 and radii.min() > 0.7 * 0.95


def test_backend_choice_on_cpu_and_errors():
    r = get_rasterizer("auto", "cpu")
    assert r.name == "torch"
    assert get_rasterizer("torch", "cpu").name == "torch"
    with pytest.raises(DeviceError):
        get_rasterizer("nvdiffrast", "cpu")
    with pytest.raises(UsageError):
        get_rasterizer("opengl", "cpu")


def test_a_preloaded_plugin_failure_is_tried_once_and_reported_by_the_job(monkeypatch):
    """preload() builds in a thread; its failure is kept (not retried: a failing build can take a minute)
    and the first rasterizer request reports it as it always does."""
    import warnings

    from instantmesh_cli.texture import raster, raster_nvdiffrast

    tries = []

    def failing_build(device, notice=None):
        tries.append(device)
        raise OSError("no CUDA toolkit")

    monkeypatch.setattr(raster_nvdiffrast, "NvdiffrastRasterizer", failing_build)
    monkeypatch.setattr(raster, "_CACHE", {})
    monkeypatch.setattr(raster, "_NVDIFFRAST_ERROR", [])
    assert raster.preload("cpu") is None  # nothing to load off CUDA
    raster.preload("cuda:0").join()
    with pytest.raises(DeviceError, match="no CUDA toolkit"):
        get_rasterizer("nvdiffrast", "cuda:0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert get_rasterizer("auto", "cuda:0").name == "torch"
    assert [str(w.message) for w in caught if "no CUDA toolkit" in str(w.message)]
    assert len(tries) == 1


def test_preload_imports_the_extension_loader_before_its_thread_starts():
    """Importing setuptools (torch.utils.cpp_extension does) adds and removes a sys.meta_path finder: done in
    a thread beside others' imports it can make them miss modules that exist. preload() runs it first, in a
    fresh process where nothing imported it yet."""
    code = textwrap.dedent("""
        import sys, threading
        from instantmesh_cli.texture import raster
        changes = []
        class Watched(list):
            def insert(self, i, x):
                changes.append("insert"); super().insert(i, x)
            def remove(self, x):
                changes.append("remove"); super().remove(x)
        sys.meta_path = Watched(sys.meta_path)
        seen = []
        class Recording(threading.Thread):
            def start(self):
                seen.append(("torch.utils.cpp_extension" in sys.modules, list(changes)))
        raster.threading.Thread = Recording
        assert "torch.utils.cpp_extension" not in sys.modules
        raster.preload("cuda:0")
        print(seen)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    imported, changes = eval(done.stdout.strip())[0]
    assert imported  # before the thread starts, on the caller's thread
    assert changes.count("insert") == changes.count("remove") >= 1  # the hazard that makes this matter


def test_loaded_plugin_is_registered_in_sys_modules(monkeypatch):
    """The torch >= 2.11 quirk: the extension loader no longer registers the module; ours does."""
    import torch.utils.cpp_extension as ext

    from instantmesh_cli.texture.raster_nvdiffrast import _register_loaded_modules

    fresh = types.ModuleType("imesh_fake_plugin_fresh")
    cached = types.ModuleType("imesh_fake_plugin_cached")
    monkeypatch.setattr(ext, "load", lambda *a, **k: fresh)
    monkeypatch.setattr(ext, "_import_module_from_library", lambda *a, **k: cached)
    monkeypatch.delitem(sys.modules, fresh.__name__, raising=False)
    monkeypatch.delitem(sys.modules, cached.__name__, raising=False)
    builds = []
    with _register_loaded_modules(on_build=lambda: builds.append("build")):
        assert ext._import_module_from_library("x", "/nowhere", True) is cached
        assert builds == []  # a cached plugin is no build: no notice
        assert ext.load(name="x") is fresh
        assert builds == ["build"]
    assert sys.modules[fresh.__name__] is fresh and sys.modules[cached.__name__] is cached
    # The loaders are restored afterwards.
    assert ext.load(name="x") is fresh and not hasattr(ext.load, "__wrapped__")
    for name in (fresh.__name__, cached.__name__):
        del sys.modules[name]


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU and an nvdiffrast build (runs on the GPU machine)")
def test_nvdiffrast_matches_the_torch_rasterizer():
    from instantmesh_cli.texture.bake import uv_clip
    from instantmesh_cli.texture.uv import box_unwrap

    v, f = icosphere(3, 0.8)
    v = v * torch.tensor([1.0, 0.8, 1.2])  # not a sphere: views differ
    mvp = mvp_from_cameras(zero123plus_cameras(6))
    nv = get_rasterizer("nvdiffrast", "cuda")
    assert nv.name == "nvdiffrast" and get_rasterizer("auto", "cuda").name == "nvdiffrast"
    th = TorchRasterizer("cuda")
    pos = clip_positions(v.cuda(), mvp.cuda())
    fc = f.cuda()
    a = nv.rasterize(pos, fc, (320, 320))
    b = th.rasterize(pos, fc, (320, 320))
    cov_a, cov_b = a[..., 3] > 0, b[..., 3] > 0
    assert (cov_a == cov_b).float().mean() > 0.998
    same = a[..., 3] == b[..., 3]
    assert same[cov_a].float().mean() > 0.98
    # nvdiffrast snaps vertices to 1/16 pixel, so the two disagree only right next to triangle edges
    # or where two surfaces meet at (nearly) the same depth, along the silhouette's fold.
    edge = torch.minimum(torch.minimum(b[..., 0], b[..., 1]), 1 - b[..., 0] - b[..., 1])
    tie = (a[..., 2] - b[..., 2]).abs() < 1e-3
    differ = ~same & cov_a & cov_b
    assert ((edge < 0.05) | tie)[differ].all()
    both = same & cov_a
    torch.testing.assert_close(a[both][:, :2], b[both][:, :2], atol=1e-2, rtol=0)
    torch.testing.assert_close(a[both][:, 2], b[both][:, 2], atol=1e-5, rtol=0)
    pa = nv.interpolate(v.cuda(), a, fc)
    pb = th.interpolate(v.cuda(), b, fc)
    assert (pa[both] - pb[both]).abs().max() < 2e-3
    # UV-space rasterization (the bake) of a real atlas agrees too.
    atlas = box_unwrap(v.double().numpy(), f.numpy(), texture_size=256, padding=2)
    clip = uv_clip(torch.from_numpy(atlas.uv).cuda())
    uf = torch.from_numpy(atlas.faces).cuda()
    ua, ub = nv.rasterize(clip, uf, (256, 256)), th.rasterize(clip, uf, (256, 256))
    assert ((ua[..., 3] > 0) == (ub[..., 3] > 0)).float().mean() > 0.995
    assert (ua[..., 3] == ub[..., 3])[ua[..., 3] > 0].float().mean() > 0.98
    # Antialiasing keeps the interior and softens only the silhouette.
    img, mask = render(nv, v.cuda(), fc, mvp.cuda(), (320, 320), vertex_colors=torch.ones_like(v).cuda() * 0.2,
                       antialias=True)
    interior = -torch.nn.functional.max_pool2d(-mask[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0.5
    assert interior.sum() > 10000
    torch.testing.assert_close(img[interior], torch.full_like(img[interior], 0.2))
    assert ((img > 0.21) & (img < 0.99)).any()


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU and an nvdiffrast build (runs on the GPU machine)")
def test_texture_stage_agrees_across_backends_on_cuda():
    from torch import nn

    from instantmesh_cli.mesh import Mesh
    from instantmesh_cli.texture import texture_mesh

    torch.manual_seed(0)
    v, f = icosphere(4, 0.7)
    mesh = Mesh(v.numpy(), f.numpy())
    cams = zero123plus_cameras(6)
    views, _ = render(TorchRasterizer("cuda"), v, f, mvp_from_cameras(cams), (320, 320),
                      color_fn=lambda p: (p * 0.6 + 0.5).clamp(0, 1))
    planes = torch.randn(1, 3, 8, 32, 32, device="cuda") * 0.1
    head = nn.Sequential(nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, 3), nn.Sigmoid()).cuda()
    outs = {}
    for kind in ("nvdiffrast", "torch"):
        out, report = texture_mesh(mesh, planes, head, views.permute(0, 3, 1, 2), cams, refine_steps=20,
                                   texture_size=512, rasterizer=kind)
        assert report.rasterizer == kind and report.psnr_after > report.psnr_before + 5
        outs[kind] = (out, report)
    (a, ra), (b, rb) = outs["nvdiffrast"], outs["torch"]
    assert abs(ra.psnr_after - rb.psnr_after) < 0.5
    np.testing.assert_array_equal(a.uv, b.uv)
    diff = np.abs(a.texture.astype(int) - b.texture.astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8
