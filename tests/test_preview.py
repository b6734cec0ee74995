"""Previews, turntables, the contact sheet and the quality signal (``instantmesh_cli.preview``, ``imesh preview``).

The test object is a block with a knob on its +X side near the top (glTF frame), so a
render that is mirrored, upside down or seen from the back is told apart from the right
one; silhouettes are checked against an independent projection of the boxes' corners.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import ConvexHull

from instantmesh_cli.cli import run
from instantmesh_cli.export import export_mesh, export_transform
from instantmesh_cli.mesh import Mesh
from instantmesh_cli.preview.meshfile import crease_normals, from_arrays, from_mesh, load_mesh, normalized
from instantmesh_cli.preview.quality import exported_frame_mvp, exported_to_model, mesh_quality
from instantmesh_cli.preview.render import FOV_DEG, fit_distance, render_orbit
from instantmesh_cli.preview.sheet import ContactEntry, contact_sheet, preview_sheet
from instantmesh_cli.preview.turntable import turntable, write_animation

BODY = ((-0.3, -0.5, -0.2), (0.3, 0.5, 0.2))  # glTF frame: X right, Y up, Z towards the viewer
KNOB = ((0.3, 0.15, -0.1), (0.55, 0.4, 0.1))  # on the +X side, in the upper half
BLUE, RED = (0.15, 0.3, 0.8), (0.9, 0.15, 0.1)
GLTF_TO_MODEL = [2, 0, 1]  # model x = glTF Z, model y = glTF X, model z = glTF Y (export.py's inverse)


def box(lo, hi):
    """24 vertices (4 per side, so each side can have its own UVs) and 12 outward CCW triangles."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    verts, faces = [], []
    for axis in range(3):
        for sign in (-1, 1):
            u, v = [(1, 2), (2, 0), (0, 1)][axis]
            if sign < 0:
                u, v = v, u  # keep (u, v, normal) right-handed so the winding faces outward
            corners = []
            for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = np.where(np.arange(3) == axis, hi if sign > 0 else lo, 0.0)
                p[u] = (lo, hi)[a][u]
                p[v] = (lo, hi)[b][v]
                corners.append(p)
            k = len(verts)
            verts += corners
            faces += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
    return np.array(verts), np.array(faces)


def knob_object(mirror: bool = False) -> Mesh:
    """The block + knob as a vertex-coloured model-frame Mesh (what the pipeline hands to export)."""
    vb, fb = box(*BODY)
    vk, fk = box(*KNOB)
    gltf = np.concatenate([vb, vk])
    faces = np.concatenate([fb, fk + len(vb)])
    colors = np.array([BLUE] * len(vb) + [RED] * len(vk))
    if mirror:
        gltf = gltf * [-1, 1, 1]
        faces = faces[:, ::-1]
    return Mesh(gltf[:, GLTF_TO_MODEL], faces, colors)


def corners(lo, hi):
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def analytic_mask(boxes, az, el, size):
    """Silhouette of a union of boxes (already normalised) under the preview's camera, derived here independently."""
    pts = np.concatenate([corners(*b) for b in boxes])
    distance = fit_distance(float(np.linalg.norm(pts, axis=1).max()), FOV_DEG)
    a, e = math.radians(az), math.radians(el)
    eye = distance * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    fwd = -eye / np.linalg.norm(eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    t = math.tan(math.radians(FOV_DEG) / 2)
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    px = np.stack([(2 * j + 1) / size - 1, 1 - (2 * i + 1) / size], axis=-1).reshape(-1, 2)  # row 0 = top
    mask = np.zeros(len(px), bool)
    for b in boxes:
        q = corners(*b) - eye
        ndc = np.stack([q @ right, q @ up], axis=1) / ((q @ fwd)[:, None] * t)
        eq = ConvexHull(ndc).equations
        mask |= (px @ eq[:, :2].T + eq[:, 2] <= 1e-9).all(axis=1)
    return mask.reshape(size, size)


def normalised_boxes():
    lo = np.minimum(BODY[0], KNOB[0])
    hi = np.maximum(BODY[1], KNOB[1])
    c, s = (lo + hi) / 2, 1.0 / (hi - lo).max()
    return [((np.asarray(b[0]) - c) * s, (np.asarray(b[1]) - c) * s) for b in (BODY, KNOB)]


def iou(a, b):
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("preview")
    mesh = knob_object()
    out = {fmt: d / f"knob.{fmt}" for fmt in ("glb", "obj", "ply")}
    for path in out.values():
        export_mesh(mesh, path)
    return out


def red_centroid(img):
    red = (img[..., 0].astype(int) - img[..., 2].astype(int)) > 60
    ys, xs = np.nonzero(red)
    return xs.mean() / img.shape[1], ys.mean() / img.shape[0], red.sum()


# ------------------------------------------------------------------------------------------ render


def test_silhouette_matches_the_analytic_one_at_every_azimuth(files):
    pm = load_mesh(files["glb"])
    azimuths = [0, 60, 120, 180, 240, 300]
    frames = render_orbit(pm, azimuths, 20.0, 96, device="cpu")
    assert frames.images.shape == (6, 96, 96, 3) and frames.images.dtype == np.uint8
    boxes = normalised_boxes()
    for k, az in enumerate(azimuths):
        assert iou(frames.mask()[k], analytic_mask(boxes, az, 20.0, 96)) >= 0.95, az
    # The check can fail: the knob on the other side does not match.
    mirrored = [(b[0] * [-1, 1, 1], b[1] * [-1, 1, 1]) for b in boxes]
    mirrored = [(np.minimum(lo, hi), np.maximum(lo, hi)) for lo, hi in mirrored]
    assert iou(frames.mask()[0], analytic_mask(mirrored, 0, 20.0, 96)) < 0.92
    # Antialiased: the silhouette edge has partial coverage.
    assert ((frames.coverage > 0.05) & (frames.coverage < 0.95)).any()


def test_upright_and_facing_the_viewer(files):
    pm = load_mesh(files["glb"])
    front, back, right_side = render_orbit(pm, [0, 180, 90], 0.0, 80, device="cpu").images
    x, y, _ = red_centroid(front)
    assert x > 0.6 and y < 0.45  # knob on the viewer's right (+X), in the upper half (+Y up)
    x, y, _ = red_centroid(back)
    assert x < 0.4 and y < 0.45  # from behind, +X is on the left
    x, _, n = red_centroid(right_side)
    assert abs(x - 0.5) < 0.1 and n > 0  # from +X the knob faces the camera
    # Unlit, the body shows exactly its colour (linear COLOR_0 back to sRGB); shaded, its sides differ.
    def body(img):
        return img[(img[..., 2].astype(int) - img[..., 0].astype(int)) > 60].astype(int)

    flat = body(render_orbit(pm, [30], 20.0, 80, device="cpu", shaded=False).images[0])
    assert len(flat) > 500 and np.abs(np.median(flat, axis=0) - np.round(np.array(BLUE) * 255)).max() <= 2
    lit = body(render_orbit(pm, [30], 20.0, 80, device="cpu").images[0])
    assert lit[:, 2].std() > 8


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_obj_and_ply_render_like_the_glb(files, fmt):
    ref = render_orbit(load_mesh(files["glb"]), [30], 20.0, 64, device="cpu")
    other = render_orbit(load_mesh(files[fmt]), [30], 20.0, 64, device="cpu")
    assert iou(ref.mask()[0], other.mask()[0]) > 0.99
    assert np.abs(ref.images.astype(int) - other.images.astype(int)).mean() < 4  # same colours (sRGB vs linear handled)


@pytest.mark.parametrize("fmt", ["glb", "obj"])
def test_texture_lands_the_right_way_up_on_the_front(tmp_path, fmt):
    """Front (+Z) side: red upper half, green lower half of its texture cell; every other side grey."""
    v, f = box((-0.5, -0.5, -0.3), (0.5, 0.5, 0.3))
    tex = np.full((64, 64, 3), 128, np.uint8)
    tex[0:16, 0:32] = (220, 20, 20)  # texture rows 0-15 = v in (0.75, 1]: upper half of the cell
    tex[16:32, 0:32] = (20, 200, 20)
    uv = np.full((len(v), 2), 0.75, np.float32)  # grey cell
    front = np.arange(20, 24)  # box() lists the sides -X, +X, -Y, +Y, -Z, +Z, four vertices each
    for k in front:  # the front side's corners map onto the cell u in [0, 0.5], v in [0.5, 1]
        uv[k] = (0.5 * (v[k, 0] + 0.5), 0.5 + 0.5 * (v[k, 1] + 0.5))
    assert np.allclose(v[front, 2], 0.3)
    mesh = Mesh(v[:, GLTF_TO_MODEL], f, uv=uv, texture=tex)
    path = tmp_path / f"tex.{fmt}"
    export_mesh(mesh, path)
    img = render_orbit(load_mesh(path), [0], 0.0, 64, device="cpu").images[0]
    upper, lower = img[24, 32].astype(int), img[40, 32].astype(int)
    assert upper[0] > upper[1] + 80 and lower[1] > lower[0] + 80, (upper, lower)
    side = render_orbit(load_mesh(path), [90], 0.0, 64, device="cpu").images[0][32, 32].astype(int)
    assert np.ptp(side) < 10  # the +X side is grey


def test_a_foreign_z_up_glb_stood_up_by_its_node_renders_upright(tmp_path):
    """Another tool's GLB: Z-up geometry under a node that rotates it to glTF's +Y up, with a flat red material."""
    import trimesh

    body = trimesh.creation.box(extents=[0.6, 0.4, 1.0])  # Z-up: 1.0 tall along Z
    knob = trimesh.creation.box(extents=[0.25, 0.2, 0.25])
    knob.apply_translation([0.42, 0.0, 0.27])  # +X, upper half
    geom = trimesh.util.concatenate([body, knob])
    geom.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 20, 20, 255])
    )
    scene = trimesh.Scene()
    scene.add_geometry(geom, transform=trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    path = tmp_path / "foreign.glb"
    path.write_bytes(scene.export(file_type="glb"))
    pm = load_mesh(path)
    extent = np.ptp(pm.positions, axis=0)
    assert extent[1] == pytest.approx(1.0) and extent[1] > extent[0] > extent[2]  # tallest along +Y
    frames = render_orbit(pm, [0], 0.0, 80, device="cpu")
    img, mask = frames.images[0], frames.mask()[0]
    ys, xs = np.nonzero(mask)
    assert np.ptp(ys) > 1.1 * np.ptp(xs)  # standing (1.0 tall, 0.85 wide); lying down it would be 0.4 tall
    # The knob sticks out on the right, in the upper half.
    rows_right = ys[xs > np.percentile(xs, 97)]
    assert rows_right.mean() < 40
    fg = img[mask].astype(int)
    assert (fg[:, 0] > fg[:, 1] + 40).mean() > 0.95  # the material's red (linear factor shown as sRGB)


def test_from_arrays_and_clay(tmp_path):
    v, f = box((0, 0, 0), (2, 1, 1))
    pm = normalized(from_arrays(v, f))
    assert np.ptp(pm.positions, axis=0).max() == pytest.approx(1.0)
    assert np.allclose(pm.positions.min(0) + pm.positions.max(0), 0, atol=1e-6)
    assert pm.scale == pytest.approx(0.5) and np.allclose(pm.center, [1, 0.5, 0.5])
    img = render_orbit(pm, [0], 10.0, 32, device="cpu", shaded=False).images[0]
    np.testing.assert_allclose(img[16, 16], (204, 173, 143), atol=2)  # no colour in the file: clay


def test_normals_are_flat_across_creases_and_smooth_on_curves():
    import trimesh

    cube = trimesh.creation.box()  # 8 shared corners: smoothing them all would shade the cube as a blob
    n = crease_normals(np.asarray(cube.vertices, np.float32), np.asarray(cube.faces))
    np.testing.assert_allclose(n, np.repeat(np.asarray(cube.face_normals)[:, None], 3, axis=1), atol=1e-6)
    sphere = trimesh.creation.icosphere(3)
    n = crease_normals(np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces))
    radial = np.asarray(sphere.vertices)[sphere.faces]
    assert np.abs(n - radial / np.linalg.norm(radial, axis=-1, keepdims=True)).max() < 0.02


def test_load_errors_are_one_line_input_errors(tmp_path):
    from instantmesh_cli.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        load_mesh(tmp_path / "missing.glb")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="not a mesh file"):
        load_mesh(tmp_path / "a.txt")
    (tmp_path / "bad.glb").write_bytes(b"not a glb at all")
    with pytest.raises(InputError, match="cannot read"):
        load_mesh(tmp_path / "bad.glb")
    (tmp_path / "empty.obj").write_text("# nothing\n")
    with pytest.raises(InputError):
        load_mesh(tmp_path / "empty.obj")


# ------------------------------------------------------------------------------------------ sheets


def test_preview_sheet_with_input_photo(files, tmp_path):
    photo = Image.new("RGBA", (50, 30), (0, 0, 0, 0))
    photo.paste((10, 200, 10, 255), (10, 5, 40, 25))
    sheet = preview_sheet(files["glb"], photo, size=48, device="cpu")
    assert sheet.width == 7 * 48 and sheet.height > 48
    arr = np.asarray(sheet)
    green = arr[:48, :48, 1].astype(int) - arr[:48, :48, 0] > 100
    assert 0.2 < green.mean() < 0.5  # the photo is the first tile, fitted whole, its transparency flattened


def test_contact_sheet_is_rewritten_as_the_batch_goes(files, tmp_path):
    path = tmp_path / "sheet" / "contact.png"
    entries = [ContactEntry("knob.glb", "ok", mesh=files["glb"])]
    first = contact_sheet(entries, path, thumb=64, device="cpu")
    assert Image.open(path).size == first.size
    entries += [
        ContactEntry("broken.jpg", "failed", detail="not an image"),
        ContactEntry("odd.glb", "suspect", thumbnail=Image.new("RGB", (40, 40), (0, 0, 0)), detail="IoU 0.41"),
    ]
    second = contact_sheet(entries, path, thumb=64, device="cpu")
    back = Image.open(path)
    assert back.size == second.size and back.width == 3 * first.width
    assert sorted(p.name for p in path.parent.iterdir()) == ["contact.png"]  # no temporary file left
    arr = np.asarray(back.convert("RGB")).astype(int)
    cell = first.width
    for k, color in enumerate([(46, 125, 50), (198, 40, 40), (230, 140, 0)]):
        hits = (np.abs(arr[:, k * cell : (k + 1) * cell] - color).sum(-1) < 10).sum()
        assert hits > 100, k  # each cell has its status colour (border and text)
    with pytest.raises(ValueError):
        ContactEntry("x", "meh")
    # An output that cannot be read back gets a blank tile; the sheet is still written.
    contact_sheet(entries + [ContactEntry("gone.glb", "ok", mesh=tmp_path / "gone.glb")], path, thumb=64, device="cpu")
    assert Image.open(path).width == 4 * first.width


# ------------------------------------------------------------------------------------------ turntable


def test_turntable_gif_has_the_frames_and_size_asked(files, tmp_path):
    frames = turntable(files["glb"], frames=6, size=40, elevation=10.0, device="cpu")
    assert len(frames) == 6 and all(f.size == (40, 40) for f in frames)
    path = write_animation(frames, tmp_path / "spin.gif", fps=25)
    gif = Image.open(path)
    assert gif.format == "GIF" and gif.n_frames == 6 and gif.size == (40, 40)
    assert gif.info.get("duration") == 40 and gif.info.get("loop") == 0
    # Frame 0 is the front view: the knob on the right.
    gif.seek(0)
    x, _, _ = red_centroid(np.asarray(gif.convert("RGB")))
    assert x > 0.6


def test_mp4_without_imageio_ffmpeg_says_how_to_get_it(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import now raises ImportError
    assert run(["preview", str(files["glb"]), "-o", str(tmp_path / "t.mp4"), "--frames", "2", "--size", "32"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "imageio-ffmpeg" in line and "[video]" in line
    assert not (tmp_path / "t.mp4").exists()


def test_mp4_when_imageio_ffmpeg_is_installed(files, tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="the optional 'video' extra is not installed")
    frames = turntable(files["glb"], frames=4, size=32, device="cpu")
    path = write_animation(frames, tmp_path / "t.mp4", fps=10)
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and len(data) > 500


# ------------------------------------------------------------------------------------------ quality


@pytest.fixture(scope="module")
def view_grid():
    """The six Zero123++ views of the knob object, rendered in the model frame independently of preview/."""
    from instantmesh_cli.multiview.grid import join_views
    from instantmesh_cli.reconstruction.cameras import mvp_matrices
    from instantmesh_cli.texture.raster_torch import TorchRasterizer
    from instantmesh_cli.texture.render import render

    mesh = knob_object()
    img, _ = render(
        TorchRasterizer(), torch.from_numpy(mesh.vertices), torch.from_numpy(mesh.faces), mvp_matrices(6), (160, 160),
        vertex_colors=torch.from_numpy(mesh.vertex_colors), background=1.0, antialias=True,
    )
    tiles = [Image.fromarray((v.numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)) for v in img]
    return join_views(tiles)


def test_exported_frame_cameras_invert_the_export_transform():
    from instantmesh_cli.reconstruction.cameras import mvp_matrices

    mesh = knob_object()
    t = export_transform(mesh)
    g = t.apply(mesh.vertices)
    m = exported_to_model(t)
    back = g @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(back, t.invert(g), atol=1e-5)
    homo = lambda p: np.concatenate([p, np.ones((len(p), 1))], 1)  # noqa: E731
    clip_model = np.einsum("vij,nj->vni", mvp_matrices(6).double().numpy(), homo(mesh.vertices.astype(np.float64)))
    clip_gltf = np.einsum("vij,nj->vni", exported_frame_mvp(t).double().numpy(), homo(g.astype(np.float64)))
    np.testing.assert_allclose(clip_gltf, clip_model, atol=1e-4)


def test_quality_is_high_for_the_right_mesh_and_drops_for_broken_ones(tmp_path, view_grid):
    good_mesh = knob_object()
    export_mesh(good_mesh, tmp_path / "good.glb")
    good = mesh_quality(tmp_path / "good.glb", view_grid, export_transform(good_mesh), device="cpu")
    assert good.iou > 0.97 and good.psnr > 28 and not good.suspect, good
    assert len(good.view_iou) == 6 and min(good.view_iou) > 0.95

    mirrored_mesh = knob_object(mirror=True)
    export_mesh(mirrored_mesh, tmp_path / "mirrored.glb")
    mirrored = mesh_quality(tmp_path / "mirrored.glb", view_grid, export_transform(mirrored_mesh), device="cpu")
    assert mirrored.iou < good.iou - 0.05 and mirrored.psnr < good.psnr - 8, mirrored

    holed_mesh = Mesh(good_mesh.vertices, good_mesh.faces[::2], good_mesh.vertex_colors)
    export_mesh(holed_mesh, tmp_path / "holed.obj")  # another format through the same path
    holed = mesh_quality(tmp_path / "holed.obj", view_grid, export_transform(holed_mesh), device="cpu")
    assert holed.iou < good.iou - 0.1 and holed.psnr < good.psnr - 8, holed
    # The same numbers straight from the in-memory Mesh (no file: ``-o -``).
    direct = mesh_quality(from_mesh(good_mesh), view_grid, export_transform(good_mesh), device="cpu")
    assert abs(direct.iou - good.iou) < 1e-3 and direct.psnr > 28
    d = good.as_dict()
    assert set(d) == {"psnr", "iou", "view_psnr", "view_iou", "suspect"} and d["suspect"] is False


def test_quality_numbers_are_their_definitions_over_the_union_of_silhouettes():
    from instantmesh_cli.preview.quality import NEAR_WHITE, compare

    rng = np.random.RandomState(4)
    rendered = rng.randint(0, 256, (6, 24, 24, 3)).astype(np.uint8)
    views = rng.randint(0, 256, (6, 24, 24, 3)).astype(np.uint8)
    views[:, :8] = 255  # near-white: not foreground
    mask = rng.rand(6, 24, 24) > 0.4
    mask[5], views[5], rendered[5] = False, 255, 255  # an empty view: IoU 1, PSNR inf
    q = compare(rendered, mask, views)
    sq, count = 0.0, 0
    for i in range(6):
        fg = views[i].min(axis=-1) < NEAR_WHITE
        union, inter = mask[i] | fg, mask[i] & fg
        assert q.view_iou[i] == (inter.sum() / union.sum() if union.any() else 1.0)
        e = (((rendered[i].astype(float) - views[i]) / 255.0) ** 2)[union].sum()
        want = -10 * np.log10(e / (union.sum() * 3)) if union.any() else float("inf")
        assert q.view_psnr[i] == pytest.approx(want, rel=1e-12)
        sq, count = sq + e, count + union.sum() * 3
    assert q.psnr == pytest.approx(-10 * np.log10(sq / count), rel=1e-12) and q.iou == pytest.approx(np.mean(q.view_iou))


def test_quality_rejects_a_bad_view_grid(files):
    from instantmesh_cli.errors import InputError

    with pytest.raises(InputError, match="grid"):
        mesh_quality(files["glb"], Image.new("RGB", (100, 100)), export_transform(knob_object()), device="cpu")


# ------------------------------------------------------------------------------------------ CLI


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("imesh: error: ") and "Traceback" not in err
    return lines[0]


def test_cli_writes_png_and_gif(files, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photo)
    out = tmp_path / "out" / "p.png"
    assert run(["preview", str(files["glb"]), "-o", str(out), "--size", "40", "--input", str(photo), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert Image.open(out).size[0] == 7 * 40
    gif = tmp_path / "t.gif"
    assert run(["preview", str(files["obj"]), "-o", str(gif), "--frames", "3", "--size", "24", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(gif)
    back = Image.open(gif)
    assert back.n_frames == 3 and back.size == (24, 24)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photo.png", "t.gif"]


def test_cli_errors_are_one_line(files, tmp_path, capsys):
    assert run(["preview", str(tmp_path / "nope.glb"), "-o", str(tmp_path / "x.png")]) == 1
    assert "no such file" in one_error_line(capsys.readouterr().err)
    assert run(["preview", str(files["glb"]), "-o", str(tmp_path / "x.jpg")]) == 2
    assert ".png" in one_error_line(capsys.readouterr().err)
    assert run(["preview", str(files["glb"]), "-o", str(tmp_path / "x.png"), "--frames", "5"]) == 2
    assert "--frames" in one_error_line(capsys.readouterr().err)
    assert run(["preview", str(files["glb"]), "-o", str(tmp_path / "x.gif"), "--elevation", "95"]) == 2
    assert "--elevation" in one_error_line(capsys.readouterr().err)
    assert run(["preview", str(files["glb"]), "-o", str(tmp_path / "x.gif"), "--input", str(files["glb"])]) == 2
    assert "--input" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []
