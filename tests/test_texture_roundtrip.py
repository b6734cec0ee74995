"""The texture stage end to end on a synthetic object, on the CPU with the torch rasterizer.

A lopsided object with a smooth colour field is rendered at the six Zero123++
cameras; refinement starts from a random tiny triplane + colour head and fits the
views; the refined field is baked; the GLB is exported, reloaded with trimesh and
rendered again at the same cameras (through ExportTransform.invert).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from instantmesh_cli.errors import InputError
from instantmesh_cli.export import encode_glb, export_transform
from instantmesh_cli.mesh import Mesh, clean_mesh
from instantmesh_cli.reconstruction.cameras import zero123plus_cameras
from instantmesh_cli.texture import texture_mesh
from instantmesh_cli.texture.raster_torch import TorchRasterizer
from instantmesh_cli.texture.refine import as_color_head, query_colors, refine_texture
from instantmesh_cli.texture.render import mvp_from_cameras, psnr, render

RES = 128  # view size: small for speed; the cameras are the real ones
C = 8  # tiny triplane channels


def lopsided_object(res: int = 44) -> Mesh:
    """An ellipsoid (wide in y, flat in z) with a knob up and to the right (+y, +z), model frame."""
    from skimage.measure import marching_cubes

    g = np.linspace(-1, 1, res)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    body = np.sqrt((x / 0.45) ** 2 + (y / 0.7) ** 2 + (z / 0.4) ** 2) - 1
    knob = (np.sqrt(x**2 + (y - 0.45) ** 2 + (z - 0.4) ** 2) - 0.22) / 0.3
    v, f, _, _ = marching_cubes(np.minimum(body, knob), 0.0)
    return clean_mesh(Mesh((v / (res - 1) * 2 - 1).astype(np.float32), f.astype(np.int64)))


def color_field(p: torch.Tensor) -> torch.Tensor:
    return torch.stack(
        [0.5 + 0.35 * torch.sin(3 * p[:, 0] + 1), 0.5 + 0.35 * torch.cos(2.5 * p[:, 1]), 0.5 + 0.3 * torch.sin(2 * p[:, 2] + 2 * p[:, 0])],
        dim=-1,
    )


class TinyHead(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(f)) * 1.002 - 0.001


@pytest.fixture(scope="module")
def scene():
    torch.manual_seed(0)
    mesh = lopsided_object()
    cams = zero123plus_cameras(6)
    mvp = mvp_from_cameras(cams)
    r = TorchRasterizer()
    views, masks = render(r, torch.from_numpy(mesh.vertices), torch.from_numpy(mesh.faces), mvp, (RES, RES), color_fn=color_field)
    planes = torch.randn(1, 3, C, 32, 32) * 0.1
    head = TinyHead(3 * C)
    return dict(mesh=mesh, cams=cams, mvp=mvp, views=views, masks=masks, planes=planes, head=head, r=r)


@pytest.fixture(scope="module")
def textured(scene):
    planes0 = scene["planes"].clone()
    head0 = [p.clone() for p in scene["head"].parameters()]
    out, report = texture_mesh(
        scene["mesh"], scene["planes"], scene["head"], scene["views"].permute(0, 3, 1, 2), scene["cams"],
        refine_steps=60, texture_size=256, rasterizer="torch",
    )
    # The caller's planes and head are untouched (the pipeline reuses the model).
    assert torch.equal(planes0, scene["planes"])
    assert all(torch.equal(a, b) for a, b in zip(head0, scene["head"].parameters()))
    return out, report


def load_glb(data: bytes):
    import trimesh

    scene = trimesh.load(io.BytesIO(data), file_type="glb", force="scene", process=False)
    (tm,) = scene.geometry.values()
    return tm


def test_refinement_fits_the_views_and_reports(textured):
    out, report = textured
    assert report.refine_steps == 60 and report.rasterizer == "torch" and report.uv_method == "box"
    assert report.psnr_before < 20 < 35 < report.psnr_after
    for key in ("refine_setup", "refine", "decimate", "uv", "bake"):
        assert report.timings[key] >= 0
    assert out.is_textured and out.texture.shape == (256, 256, 3) and out.texture.dtype == np.uint8
    assert out.uv.min() >= 0 and out.uv.max() <= 1
    assert out.vertex_colors is not None and out.vertex_colors.shape == (out.num_vertices, 3)


def test_glb_round_trip_renders_the_views(scene, textured):
    out, _ = textured
    data = encode_glb(out)
    tm = load_glb(data)
    uv = np.asarray(tm.visual.uv, np.float32)
    assert uv.min() >= 0 and uv.max() <= 1
    tex = np.array(tm.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(tex, out.texture)
    model_vertices = export_transform(out).invert(np.asarray(tm.vertices))
    img, mask = render(
        scene["r"], torch.from_numpy(model_vertices), torch.from_numpy(np.asarray(tm.faces, np.int64)), scene["mvp"],
        (RES, RES), uv=torch.from_numpy(uv), texture=torch.from_numpy(tex),
    )
    masks = scene["masks"]
    iou = float((mask & masks).sum() / (mask | masks).sum())
    assert iou > 0.99
    assert psnr(img, scene["views"], mask & masks) >= 30.0
    assert psnr(img, scene["views"]) >= 30.0


def _ortho_silhouette(points_2d: np.ndarray, faces: np.ndarray, size: int = 96) -> torch.Tensor:
    """Mask of a mesh projected orthographically onto (right, up), fitted into the image by its bounding box."""
    lo, hi = points_2d.min(0), points_2d.max(0)
    p = (points_2d - (lo + hi) / 2) / (hi - lo).max() * 1.8
    clip = np.concatenate([p[:, :1], -p[:, 1:2], np.zeros_like(p[:, :1]), np.ones_like(p[:, :1])], axis=1)  # row 0 = top
    rast = TorchRasterizer().rasterize(torch.from_numpy(clip[None]).float(), torch.from_numpy(faces), (size, size))
    return rast[0, ..., 3] > 0


def test_exported_glb_seen_from_plus_z_matches_the_input_view(scene, textured):
    """The input photo looks at the object from model +x, with image-right = +y and up = +z."""
    out, _ = textured
    tm = load_glb(encode_glb(out))
    gltf = np.asarray(tm.vertices)
    faces = np.asarray(tm.faces, np.int64)
    # From +Z looking down -Z (glTF): right = +X, up = +Y.
    seen = _ortho_silhouette(gltf[:, [0, 1]], faces)
    mesh = scene["mesh"]
    photo = _ortho_silhouette(mesh.vertices[:, [1, 2]], mesh.faces)
    iou = float((seen & photo).sum() / (seen | photo).sum())
    assert iou > 0.97
    # The check can fail: a mirrored or rotated export does not match the lopsided object.
    mirrored = _ortho_silhouette(gltf[:, [0, 1]] * [-1, 1], faces)
    assert float((mirrored & photo).sum() / (mirrored | photo).sum()) < 0.85
    # +Y is up and the front faces +Z.
    assert np.ptp(gltf[:, 1]) < np.ptp(gltf[:, 0])  # the object is wider (X) than tall (Y)
    assert gltf[:, 2].max() == pytest.approx(-gltf[:, 2].min(), abs=1e-5)  # centred


def test_every_texel_inside_a_chart_is_baked(scene, textured):
    """Independent check: texel centres inside some UV triangle carry the refined field's colour there."""
    out, _ = textured
    size = out.texture.shape[0]
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, size, 4000), rng.integers(0, size, 4000)
    centre = np.stack([(cols + 0.5) / size, 1 - (rows + 0.5) / size], axis=1)  # row 0 = top, v up
    tri = out.uv[out.faces].astype(np.float64)  # (F, 3, 2)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    found_pos, found_tex = [], []
    for (u, v), r, q in zip(centre, rows, cols):
        l1 = ((u - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (v - a[:, 1])) / det
        l2 = ((b[:, 0] - a[:, 0]) * (v - a[:, 1]) - (u - a[:, 0]) * (b[:, 1] - a[:, 1])) / det
        inside = np.flatnonzero((l1 > 1e-6) & (l2 > 1e-6) & (l1 + l2 < 1 - 1e-6))
        if len(inside):
            k = inside[0]
            p = out.vertices[out.faces[k]].astype(np.float64)
            found_pos.append(p[0] * (1 - l1[k] - l2[k]) + p[1] * l1[k] + p[2] * l2[k])
            found_tex.append(out.texture[r, q])
    assert len(found_pos) > 1000
    # The texture holds the refined field (the bake's own source), to 8-bit precision.
    mesh = scene["mesh"]
    refined = texture_refined_field(scene)
    expected = refined(torch.tensor(np.array(found_pos), dtype=torch.float32)).clamp(0, 1).numpy() * 255
    err = np.abs(np.array(found_tex, np.float64) - expected)
    assert err.max() <= 1.01
    assert mesh.num_faces == out.num_faces  # below the face budget: not decimated


def texture_refined_field(scene):
    """Re-run the same refinement (deterministic on CPU) and expose its colour field."""
    from instantmesh_cli.texture.render import surface_samples
    from instantmesh_cli.texture.stage import foreground_targets

    mesh = scene["mesh"]
    r = scene["r"]
    s = surface_samples(r, torch.from_numpy(mesh.vertices), torch.from_numpy(mesh.faces), scene["mvp"], (RES, RES))
    pixels, targets = foreground_targets(scene["views"].permute(0, 3, 1, 2), s.mask)
    lookup = torch.full((s.mask.numel(),), -1, dtype=torch.long)
    lookup[s.pixels] = torch.arange(s.pixels.numel())
    res = refine_texture(scene["planes"], as_color_head(scene["head"]), s.points[lookup[pixels]], targets, steps=60)
    return lambda p: query_colors(res.planes, res.color_head, p).detach()


def test_four_views_vertex_colours_and_errors(scene):
    images = scene["views"].permute(0, 3, 1, 2)[[0, 2, 4, 5]]
    out, report = texture_mesh(scene["mesh"], scene["planes"], scene["head"], images, views=4, refine_steps=5,
                               rasterizer="torch", bake=False)
    assert not out.is_textured and out.vertex_colors.shape == (out.num_vertices, 3)
    assert report.psnr_after > report.psnr_before
    with pytest.raises(ValueError):
        texture_mesh(scene["mesh"], scene["planes"], scene["head"], images, scene["cams"], refine_steps=1)
    with pytest.raises(TypeError):
        texture_mesh(scene["mesh"], scene["planes"], object(), images, views=4)
    # No refinement: the PSNR is still measured, and nothing changes.
    _, report0 = texture_mesh(scene["mesh"], scene["planes"], scene["head"], images, views=4, refine_steps=0,
                              bake=False, rasterizer="torch")
    assert report0.refine_steps == 0 and report0.psnr_before == report0.psnr_after < report.psnr_after
    # No views: bake the field as it is.
    plain, report1 = texture_mesh(scene["mesh"], scene["planes"], scene["head"], texture_size=64, rasterizer="torch")
    assert plain.is_textured and report1.psnr_before is None and "refine" not in report1.timings
    # The user-facing ranges live in PipelineOptions.check (tests/test_options.py); the library refuses nonsense.
    with pytest.raises(ValueError):
        texture_mesh(scene["mesh"], scene["planes"], scene["head"], texture_size=0)
    with pytest.raises(ValueError):
        texture_mesh(scene["mesh"], scene["planes"], scene["head"], target_faces=-1)
    with pytest.raises(InputError):
        texture_mesh(Mesh(np.zeros((0, 3)), np.zeros((0, 3))), scene["planes"], scene["head"])


def test_the_atlas_made_beside_the_refinement_gives_the_same_mesh(scene, monkeypatch):
    """overlap=True (the CUDA default) decimates and unwraps in a thread while refining: same result, and errors
    from either side reach the caller, the refinement's first."""
    import instantmesh_cli.texture.stage as stage

    images = scene["views"].permute(0, 3, 1, 2)
    kw = dict(refine_steps=3, texture_size=64, target_faces=1500, rasterizer="torch")
    plain, plain_report = texture_mesh(scene["mesh"], scene["planes"], scene["head"], images, overlap=False, **kw)
    beside, report = texture_mesh(scene["mesh"], scene["planes"], scene["head"], images, overlap=True, **kw)
    assert plain.num_faces == beside.num_faces <= 1500 < scene["mesh"].num_faces
    for name in ("vertices", "faces", "uv", "texture", "vertex_colors"):
        assert np.array_equal(getattr(plain, name), getattr(beside, name)), name
    assert plain_report.overlap_s == 0.0 <= report.overlap_s <= report.timings["decimate"] + report.timings["uv"]

    def broken_unwrap(*a, **k):
        raise RuntimeError("atlas failed")

    monkeypatch.setattr(stage, "unwrap", broken_unwrap)
    with pytest.raises(RuntimeError, match="atlas failed"):
        texture_mesh(scene["mesh"], scene["planes"], scene["head"], images, overlap=True, **kw)
    with pytest.raises(ValueError, match="views but"):  # the refinement's own error wins
        texture_mesh(scene["mesh"], scene["planes"], scene["head"], images[:4], scene["cams"], overlap=True, **kw)
