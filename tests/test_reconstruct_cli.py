"""``imesh reconstruct`` end to end, with tiny checkpoints served by the fake hub.

The checkpoints are the designed ones of ``lrm_fixtures.shape_state``: whatever the
views, the model reconstructs an octahedron with half-extents 0.6 / 0.4 / 0.3 along
model x / y / z, coloured sigmoid(4 * position). That makes the exported frame
checkable: glTF X = model y, Y = model z (up), Z = model x (towards the input view).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

import lrm_fixtures as fx
from instantmesh_cli.cli import run
from instantmesh_cli.export import export_transform, vertex_colors_from_gltf
from instantmesh_cli.reconstruction import config
from instantmesh_cli.reconstruction.inputs import views_from_images, views_to_tensor
from instantmesh_cli.chain.models import load_reconstruction_model
from instantmesh_cli.reconstruction.stage import reconstruct


def _grid(path, size=(640, 960), rgba=False):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 4 if rgba else 3), dtype=np.uint8)
    Image.fromarray(arr, "RGBA" if rgba else "RGB").save(path)
    return str(path)


@pytest.fixture
def mesh_large(fake_hub, monkeypatch):
    cfg = config.tiny_config(config.INSTANT_MESH_LARGE)
    return fx.serve_tiny_variant(fake_hub, monkeypatch, "instant-mesh-large", fx.shape_state(cfg))


def _load_glb(path_or_bytes):
    scene = trimesh.load(path_or_bytes, file_type="glb", force="scene", process=False)
    (geometry,) = scene.geometry.values()
    return geometry


def test_grid_to_glb_in_gltf_frame(mesh_large, tmp_path, capsys):
    grid = _grid(tmp_path / "views.png")
    out = tmp_path / "out" / "obj.glb"
    assert run(["reconstruct", grid, "-o", str(out), "--device", "cpu", "--no-texture", "--no-refine-texture"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "vertex colours" in captured.err
    tm = _load_glb(out)
    assert len(tm.faces) > 100 and tm.is_watertight
    lo, hi = tm.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-5)  # centred
    ext = hi - lo
    assert ext.max() == pytest.approx(1.0, abs=1e-5)  # longest side 1 m
    # model half-extents (x, y, z) = (0.6, 0.4, 0.3) → glTF (X, Y, Z) = (y, z, x) / 1.2
    np.testing.assert_allclose(ext, [0.4 / 0.6, 0.3 / 0.6, 1.0], atol=0.06)
    assert tm.volume > 0  # outward faces survive the conversion
    # colours: red grows with model x = glTF Z
    colors = vertex_colors_from_gltf(tm)[:, :3].astype(float)
    assert np.corrcoef(tm.vertices[:, 2], colors[:, 0])[0, 1] > 0.9
    assert np.corrcoef(tm.vertices[:, 1], colors[:, 2])[0, 1] > 0.9  # blue ~ model z = glTF Y (up)

    # exactly the library's mesh, through the one model→glTF conversion
    picked = views_from_images([Image.open(grid)], [grid])
    model = load_reconstruction_model("instant-mesh-large")
    mesh = reconstruct(model, views_to_tensor(picked, model.cfg.input_size)).mesh
    np.testing.assert_allclose(tm.vertices, export_transform(mesh).apply(mesh.vertices), atol=1e-6)


def test_textured_by_default(mesh_large, tmp_path, capsys):
    grid = _grid(tmp_path / "views.png")
    out = tmp_path / "tex.glb"
    assert run(["reconstruct", grid, "-o", str(out), "--device", "cpu", "--texture-size", "128", "--no-refine-texture"]) == 0
    assert "128² texture" in capsys.readouterr().err
    tm = _load_glb(out)
    uv = tm.visual.uv
    assert uv.min() >= 0 and uv.max() <= 1
    image = np.asarray(tm.visual.material.baseColorTexture.convert("RGB"), dtype=float)
    # sample the texture at each vertex: red still grows with model x = glTF Z
    h, w = image.shape[:2]
    texels = image[np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    assert np.corrcoef(tm.vertices[:, 2], texels[:, 0])[0, 1] > 0.8


def test_six_rgba_view_files_and_four_view_mode(mesh_large, tmp_path):
    files = []
    for i in range(6):
        rgba = np.zeros((80, 80, 4), np.uint8)
        rgba[20:60, 20:60] = (200, 30, 30, 255)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"v{i}.png")
        files.append(str(tmp_path / f"v{i}.png"))
    assert run(["reconstruct", *files, "-o", str(tmp_path / "six.ply")]) == 0
    assert len(trimesh.load(tmp_path / "six.ply", process=False).faces) > 100
    assert run(["reconstruct", *files[:4], "--views", "4", "-o", str(tmp_path / "four")]) == 0
    assert (tmp_path / "four.glb").is_file()
    assert run(["reconstruct", *files, "--views", "4", "--format", "obj", "-o", str(tmp_path / "sub.obj")]) == 0
    assert (tmp_path / "sub.obj").read_text().count("\nf ") > 100


def test_rgba_is_composited_on_white():
    rgba = Image.new("RGBA", (64, 64), (10, 20, 30, 0))
    views = views_from_images([rgba] * 6, ["v"] * 6)
    t = views_to_tensor(views, 32)
    assert t.shape == (1, 6, 3, 32, 32)
    torch.testing.assert_close(t, torch.ones_like(t))


def test_glb_to_stdout(mesh_large, tmp_path, capfd):
    grid = _grid(tmp_path / "g.png", rgba=True)
    assert run(["reconstruct", grid, "-o", "-", "--dtype", "bf16"]) == 0
    data = capfd.readouterr().out
    assert data[:4] == "glTF"


def test_nerf_variant_writes_obj(fake_hub, monkeypatch, tmp_path):
    cfg = config.tiny_config(config.INSTANT_NERF_BASE)
    fx.serve_tiny_variant(fake_hub, monkeypatch, "instant-nerf-base", fx.shape_state(cfg))
    grid = _grid(tmp_path / "g.png")
    assert run(["reconstruct", grid, "--model", "instant-nerf-base", "-o", str(tmp_path / "n.obj")]) == 0
    tm = trimesh.load(tmp_path / "n.obj", process=False)
    assert len(tm.faces) > 100 and tm.volume > 0


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--views", "5"], 2, "--views must be 4 or 6"),
        (["--model", "nope"], 2, "Invalid value for '--model' / '-m': 'nope' is not one of 'instant-mesh-large'"),
        (["--format", "stl"], 2, "Invalid value for '--format' / '-f': 'stl' is not one of 'glb', 'obj', 'ply'"),
        (["--scale", "0"], 2, "--scale must be positive"),
        (["--device", "tpu"], 2, "device"),
        (["--dtype", "fp8"], 2, "Invalid value for '--dtype': 'fp8' is not one of"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, capfd, args, code, message):
    grid = _grid(tmp_path / "g.png")
    assert run(["reconstruct", grid, "-o", str(tmp_path / "o.glb"), *args]) == code
    err = capfd.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_inputs_are_one_line_errors(tmp_path, capfd):
    wide = _grid(tmp_path / "wide.png", size=(960, 640))
    assert run(["reconstruct", wide, "-o", str(tmp_path / "o.glb")]) == 1
    assert "2 square tiles wide and 3 high" in capfd.readouterr().err
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert run(["reconstruct", str(text), "-o", str(tmp_path / "o.glb")]) == 1
    assert "not an image" in capfd.readouterr().err
    rect = []
    for i in range(6):
        Image.new("RGB", (80, 64), "white").save(tmp_path / f"r{i}.png")
        rect.append(str(tmp_path / f"r{i}.png"))
    assert run(["reconstruct", *rect, "-o", str(tmp_path / "o.glb")]) == 1
    assert "must be square" in capfd.readouterr().err
    assert run(["reconstruct", *rect[:3], "-o", str(tmp_path / "o.glb")]) == 2
    assert "got 3 images" in capfd.readouterr().err
    assert run(["reconstruct", *rect[:4], "-o", str(tmp_path / "o.glb")]) == 2
    assert "four with --views 4" in capfd.readouterr().err
    assert run(["reconstruct", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.glb")]) == 1
    err = capfd.readouterr().err
    assert "no such file" in err and err.count("\n") == 1
    assert not (tmp_path / "o.glb").exists()


def test_missing_weights_offline_is_one_line(fake_hub, monkeypatch, tmp_path, capfd):
    from instantmesh_cli import settings

    empty = fake_hub.new_commit(settings.INSTANTMESH_REPO, {})
    monkeypatch.setenv(settings.revision_env_var(settings.INSTANTMESH_REPO), empty)
    grid = _grid(tmp_path / "g.png")
    assert run(["reconstruct", grid, "-o", str(tmp_path / "o.glb"), "--offline"]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.glb").exists()
