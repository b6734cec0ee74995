"""``imesh generate`` end to end on CPU: tiny Zero123++ parts + a tiny shape-designed LRM from the fake hub.

The reconstruction checkpoint is ``lrm_fixtures.shape_state``: whatever the views,
the model reconstructs a known octahedron, so every output can be checked for real.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

import lrm_fixtures as fx
from instantmesh_cli import settings
from instantmesh_cli.cli import run
from instantmesh_cli.chain.job import derive_seed
from instantmesh_cli.reconstruction import config
from multiview_fixtures import make_tiny_zero123plus, make_white_unet_bin

FAST = ["--steps", "1", "--device", "cpu", "--no-rembg", "--no-quality"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = make_tiny_zero123plus(tmp_path_factory.mktemp("zero123plus-v1.2"))
    white = make_white_unet_bin(tmp_path_factory.mktemp("instantmesh") / settings.WHITE_UNET_FILE)
    cfg = config.tiny_config(config.INSTANT_MESH_LARGE)
    return {
        "zero123plus": {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()},
        "instantmesh": {
            settings.WHITE_UNET_FILE: white.read_bytes(),
            settings.get_variant("instant-mesh-large").checkpoint: fx.checkpoint_bytes(fx.shape_state(cfg)),
        },
        "dino": {"config.json": fx.dino_config_bytes(cfg), "preprocessor_config.json": fx.DINO_PREPROCESSOR},
        "cfg": cfg,
    }


@pytest.fixture()
def served(assets, fake_hub, monkeypatch, tmp_path):
    """Every weight file on the fake hub at fresh commits; imesh pointed at them with empty caches."""
    from huggingface_hub import constants

    monkeypatch.setitem(config.VARIANT_CONFIGS, "instant-mesh-large", assets["cfg"])
    monkeypatch.setattr(settings, "FILE_FACTS", {})
    for repo, files in (
        (settings.ZERO123PLUS_REPO, assets["zero123plus"]),
        (settings.INSTANTMESH_REPO, assets["instantmesh"]),
        (settings.DINO_REPO, assets["dino"]),
    ):
        monkeypatch.setenv(settings.revision_env_var(repo), fake_hub.new_commit(repo, files))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "imesh"))


def photo(path, shift=0):
    """An RGBA object on transparency (real alpha: background removal is skipped automatically)."""
    yy, xx = np.mgrid[:96, :96]
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[..., 0] = 180
    rgba[..., 1] = (xx * 2).astype(np.uint8)
    rgba[..., 2] = 90
    rgba[..., 3] = np.where((yy - 48) ** 2 + (xx - 44 - shift) ** 2 < 28**2, 255, 0)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def load_glb(data_or_path):
    import trimesh

    if isinstance(data_or_path, bytes):
        scene = trimesh.load(io.BytesIO(data_or_path), file_type="glb")
    else:
        scene = trimesh.load(data_or_path)
    return scene.to_geometry() if hasattr(scene, "to_geometry") else scene.dump(concatenate=True)


def check_octahedron(mesh):
    """The designed octahedron (semi-axes 0.6, 0.4, 0.3 along model x, y, z) in the glTF frame, longest side 1 m."""
    extent = mesh.bounds[1] - mesh.bounds[0]
    a, b, c = fx.SEMI_AXES
    # glTF X = model y, Y = model z (up), Z = model x (towards the viewer)
    expected = np.array([b, c, a]) / a
    # The tiny test grid (32 cells over 2.1) rounds the sharp apexes off by up to about one cell.
    assert np.allclose(extent, expected, atol=0.1), extent
    assert extent[2] == pytest.approx(1.0) and extent[1] < extent[0] < extent[2]
    assert np.allclose((mesh.bounds[0] + mesh.bounds[1]) / 2, 0.0, atol=1e-5)
    assert mesh.is_watertight


def test_one_photo_to_glb_with_json(served, tmp_path, capsys):
    src = photo(tmp_path / "mug.png")
    out = tmp_path / "mug.glb"
    code = run(["generate", str(src), "-o", str(out), "--json", "--no-texture", "--save-views", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads(captured.out.strip())
    assert set(record) == {
        "input", "output", "status", "error", "warnings", "seed", "seconds", "total_seconds",
        "vertices", "faces", "psnr_before", "psnr_after", "quality", "files",
    }
    assert record["status"] == "ok" and record["error"] is None and record["output"] == str(out)
    assert {"prepare", "multiview", "reconstruct", "export"} <= set(record["seconds"])
    assert record["seed"] == derive_seed(42, "mug.png")
    mesh = load_glb(out)
    assert record["faces"] == len(mesh.faces) > 100
    check_octahedron(mesh)
    assert Image.open(tmp_path / "mug_views.png").size == (640, 960)
    assert "Traceback" not in captured.err


def test_batch_survives_broken_files(served, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "a.png")
    (folder / "b.png").write_bytes(b"")  # 0-byte
    (folder / "c.png").write_text("not an image")
    photo(folder / "d.png", shift=4)
    out = tmp_path / "out"
    code = run(["generate", str(folder), "-o", f"{out}/", "--json", "--no-texture", *FAST])
    captured = capsys.readouterr()
    assert code == 1
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["input"].rsplit("/", 1)[1] for r in records] == ["a.png", "b.png", "c.png", "d.png"]
    assert [r["status"] for r in records] == ["ok", "failed", "failed", "ok"]
    assert all(r["error"] and "\n" not in r["error"] for r in records if r["status"] == "failed")
    assert sorted(p.name for p in out.iterdir()) == ["a.glb", "d.glb"]
    assert records[0]["seed"] != records[3]["seed"]  # each image its own seed
    for name in ("a.glb", "d.glb"):
        check_octahedron(load_glb(out / name))


def test_stdin_bytes_in_glb_bytes_out(served, tmp_path, monkeypatch, capsysbinary):
    data = photo(tmp_path / "p.png").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = run(["generate", "-", "-o", "-", "--no-texture", "--quiet", *FAST])
    captured = capsysbinary.readouterr()
    assert code == 0, captured.err
    assert captured.out[:4] == b"glTF"
    check_octahedron(load_glb(captured.out))


def test_skip_existing_and_interrupted_batch_resumes(served, tmp_path, monkeypatch, capsys):
    from instantmesh_cli.reconstruction import stage

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        photo(folder / f"{name}.png")
    out = tmp_path / "out"
    real = stage.reconstruct
    calls = {"n": 0}

    def interrupt_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "reconstruct", interrupt_second)
    assert run(["generate", str(folder), "-o", f"{out}/", "--no-texture", *FAST]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["a.glb"]  # finished output kept, nothing partial
    capsys.readouterr()
    monkeypatch.setattr(stage, "reconstruct", real)
    assert run(["generate", str(folder), "-o", f"{out}/", "--json", "--skip-existing", "--no-texture", *FAST]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in records] == ["skipped", "ok", "ok"]
    assert sorted(p.name for p in out.iterdir()) == ["a.glb", "b.glb", "c.glb"]


def test_from_list_and_obj_format(served, tmp_path, capsys):
    a = photo(tmp_path / "a.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# inputs\n{a}\n")
    code = run(["generate", "--from-list", str(listing), "-o", str(tmp_path / "o") + "/", "--format", "obj", "--no-texture", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(tmp_path / "o" / "a.obj")
    text = (tmp_path / "o" / "a.obj").read_text()
    assert text.count("\nf ") > 100


def test_textured_glb_by_default(served, tmp_path, capsys):
    src = photo(tmp_path / "cup.png")
    out = tmp_path / "cup.glb"
    code = run(["generate", str(src), "-o", str(out), "--json", "--texture-size", "128", "--refine-steps", "3", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads(captured.out)
    assert "texture" in record["seconds"] and record["psnr_before"] is not None and record["psnr_after"] is not None
    mesh = load_glb(out)
    material = mesh.visual.material
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    assert image is not None and image.size == (128, 128)
    uv = mesh.visual.uv
    assert uv is not None and uv.min() >= 0.0 and uv.max() <= 1.0


def test_multiview_command_gives_the_views_generate_uses(served, tmp_path, capsys):
    src = photo(tmp_path / "toy.png")
    assert run(["generate", str(src), "-o", str(tmp_path / "toy.glb"), "--save-views", "--no-texture", "--no-refine-texture", *FAST]) == 0
    assert run(["multiview", str(src), "-o", str(tmp_path / "grid.png"), *FAST[:-1]]) == 0
    capsys.readouterr()
    a = np.asarray(Image.open(tmp_path / "toy_views.png"))
    b = np.asarray(Image.open(tmp_path / "grid.png"))
    assert np.array_equal(a, b)


def test_python_api_run(served, tmp_path):
    from instantmesh_cli.pipeline import ImeshPipeline, PipelineOptions

    pipe = ImeshPipeline(PipelineOptions(steps=1, device="cpu", texture_size=64, refine_steps=2))
    image = Image.open(photo(tmp_path / "api.png"))
    first = pipe.run(image, name="api.png")
    assert "load" in first.timings and first.mesh.is_textured and first.psnr_after is not None
    second = pipe.run(image, name="api.png")
    assert "load" not in second.timings  # models stay loaded
    assert second.seed == first.seed and np.array_equal(np.asarray(second.views), np.asarray(first.views))


def test_quality_numbers_suspects_previews_and_contact_sheet(served, tmp_path, capsys):
    from instantmesh_cli.exchange.glb import read_glb

    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "a.png")
    photo(folder / "b.png", shift=4)
    (folder / "c.png").write_text("broken")
    out = tmp_path / "out"
    fast = [a for a in FAST if a != "--no-quality"]
    args = ["generate", str(folder), "-o", f"{out}/", "--json", "--texture-size", "64", "--refine-steps", "1", *fast]
    code = run([*args, "--min-iou", "0.999", "--preview", "--contact-sheet"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1  # a failed input outranks suspects
    assert [r["status"] for r in records] == ["suspect", "suspect", "failed"]
    q = records[0]["quality"]
    assert 0.0 <= q["iou"] < 0.999 and q["psnr"] > 0 and len(q["view_iou"]) == 6 and q["suspect"] is True
    tree, _ = read_glb((out / "a.glb").read_bytes())
    assert tree["asset"]["extras"]["provenance"]["quality"] == q  # the same numbers travel in the file
    preview = Image.open(out / "a_preview.png")
    assert preview.size[0] > 6 * preview.size[1] // 2  # the photo and six azimuths side by side
    assert str(out / "a_preview.png") in records[0]["files"]
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] > 100 and sheet.size[1] > 100
    assert "suspect" in captured.err and "2 done (2 suspect), 1 failed" in captured.err
    # Without the failed input, suspects alone exit 3; without thresholds nothing is suspect.
    (folder / "c.png").unlink()
    assert run([*args, "--min-iou", "0.999"]) == 3
    capsys.readouterr()
    assert run(args) == 0
    assert {json.loads(line)["status"] for line in capsys.readouterr().out.splitlines()} == {"ok"}
