"""``imesh multiview`` and weight loading through the fake Hub (tiny components, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instantmesh_cli import settings
from instantmesh_cli.cli import run
from multiview_fixtures import GRID_H, GRID_W, make_tiny_zero123plus, make_white_unet_bin


@pytest.fixture(scope="module")
def served(fake_hub, tmp_path_factory):
    """Commits of the two repos holding the tiny Zero123++ folder and white-background UNet."""
    folder = make_tiny_zero123plus(tmp_path_factory.mktemp("zero123plus-v1.2"))
    white = make_white_unet_bin(tmp_path_factory.mktemp("instantmesh") / settings.WHITE_UNET_FILE)
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return {
        settings.ZERO123PLUS_REPO: fake_hub.new_commit(settings.ZERO123PLUS_REPO, files),
        settings.INSTANTMESH_REPO: fake_hub.new_commit(
            settings.INSTANTMESH_REPO, {settings.WHITE_UNET_FILE: white.read_bytes()}
        ),
        "folder": folder,
        "white": white,
    }


@pytest.fixture()
def pinned(served, monkeypatch, tmp_path):
    """Point the registry at the served commits, with empty caches for this test."""
    from huggingface_hub import constants

    for repo in (settings.ZERO123PLUS_REPO, settings.INSTANTMESH_REPO):
        monkeypatch.setenv(settings.revision_env_var(repo), served[repo])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "imesh"))
    return served


def _object_png(path, size=96):
    yy, xx = np.mgrid[:size, :size]
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = (xx * 2).astype(np.uint8)
    rgba[..., 2] = (yy * 2).astype(np.uint8)
    rgba[..., 3] = np.where((yy - 48) ** 2 + (xx - 40) ** 2 < 30**2, 255, 0)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_pipeline_from_the_fake_hub_matches_the_local_folder(pinned, fake_hub):
    import torch

    from instantmesh_cli.chain.models import load_multiview_pipeline
    from instantmesh_cli.multiview.pipeline import Zero123PlusPipeline

    fake_hub.clear_log()
    pipe = load_multiview_pipeline(device=torch.device("cpu"), dtype=torch.float32)
    downloaded = {r.path.split("/resolve/")[1].split("/", 1)[1] for r in fake_hub.file_downloads()}
    # the v1.2 UNet weights are never fetched: the white-background UNet replaces them
    assert "unet/config.json" in downloaded and settings.WHITE_UNET_FILE in downloaded
    assert settings.ZERO123PLUS_UNET_WEIGHTS not in downloaded
    local = Zero123PlusPipeline.from_folder(pinned["folder"], unet_weights=pinned["white"], dtype="fp32")
    image = Image.open(_object_png(pinned["folder"].parent / "obj.png"))
    a = pipe(image, steps=2, height=GRID_H, width=GRID_W)
    b = local(image, steps=2, height=GRID_H, width=GRID_W)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_multiview_command_writes_the_grid_and_tiles(pinned, tmp_path, capsys):
    src = _object_png(tmp_path / "mug.png")
    out = tmp_path / "out" / "views.png"
    code = run(["multiview", str(src), "-o", str(out), "--steps", "1", "--device", "cpu", "--no-rembg", "--save-tiles"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    grid = Image.open(out)
    assert grid.size == (640, 960) and grid.mode == "RGB"
    names = [
        "views_az030_el+20.png", "views_az090_el-10.png", "views_az150_el+20.png",
        "views_az210_el-10.png", "views_az270_el+20.png", "views_az330_el-10.png",
    ]
    assert captured.out.split() == [str(out)] + [str(out.parent / n) for n in names]
    for i, name in enumerate(names):
        tile = Image.open(out.parent / name)
        assert tile.size == (320, 320)
        box = (320 * (i % 2), 320 * (i // 2), 320 * (i % 2) + 320, 320 * (i // 2) + 320)
        assert np.array_equal(np.asarray(tile), np.asarray(grid.crop(box)))
    assert not list(out.parent.glob(".*part*"))  # atomic writes leave no temporary files
    assert "Traceback" not in captured.err


def test_multiview_command_errors_are_one_line(pinned, tmp_path, capsys, monkeypatch):
    src = _object_png(tmp_path / "obj.png")
    assert run(["multiview", str(src), "-o", str(tmp_path / "v.jpg"), "--device", "cpu"]) == 2
    assert run(["multiview", str(src), "-o", str(tmp_path / "v.png"), "--scheduler", "nope"]) == 2
    assert run(["multiview", str(src), "-o", str(tmp_path / "v.png"), "--steps", "0"]) == 2
    assert run(["multiview", str(tmp_path / "missing.png"), "-o", str(tmp_path / "v.png"), "--device", "cpu"]) == 1
    # nothing cached and --offline: a clear weights error, nothing written
    code = run(["multiview", str(src), "-o", str(tmp_path / "v.png"), "--device", "cpu", "--no-rembg", "--offline"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("imesh: error:")
    assert not (tmp_path / "v.png").exists()


def test_a_second_load_skips_the_text_encoder_and_gives_the_same_views(pinned, monkeypatch, tmp_path):
    import inspect

    import torch

    from instantmesh_cli.chain import models
    from instantmesh_cli.chain.text_embeds import text_embeds_cache
    from instantmesh_cli.multiview import loading

    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "cache"))
    first = models.load_multiview_pipeline(device=torch.device("cpu"), dtype=torch.float32)
    assert first.components.text_encoder is None  # freed once the embedding was computed
    cached = list((tmp_path / "cache" / "text-embeds").glob("*.safetensors"))
    assert len(cached) == 1
    built = []
    real = loading._load_components
    signature = inspect.signature(real)
    monkeypatch.setattr(loading, "_load_components",
                        lambda *a: built.append(signature.bind(*a).arguments["with_text_encoder"]) or real(*a))
    second = models.load_multiview_pipeline(device=torch.device("cpu"), dtype=torch.float32)
    assert built == [False]  # with_text_encoder=False: the encoder was never read
    torch.testing.assert_close(second.text_embeddings(), first.text_embeddings(), rtol=0, atol=0)
    image = Image.open(_object_png(tmp_path / "obj.png"))
    a = first(image, steps=1, height=GRID_H, width=GRID_W)
    b = second(image, steps=1, height=GRID_H, width=GRID_W)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    # another dtype is another key: nothing computed in fp32 is reused for bf16
    assert text_embeds_cache(pinned["folder"], torch.bfloat16, torch.device("cpu")) != cached[0]
