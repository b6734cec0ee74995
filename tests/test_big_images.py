"""Big photos: cut-outs are made at a bounded resolution and written no larger than needed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instantmesh_cli.cli import run
from instantmesh_cli.images import MAX_CUTOUT_SIDE, WORK_MAX_SIDE, foreground_bbox, prepare_image
from instantmesh_cli.images.geometry import square_side
from matting_fixture import tiny_matting  # noqa: F401

RED, BLUE = (200, 30, 30), (30, 30, 200)


def photo(size, box, colour=RED, stripes=False) -> Image.Image:
    """White photo with a filled box (inclusive); ``stripes``: 2-px red/blue columns."""
    arr = np.full((size[1], size[0], 3), 255, np.uint8)
    x0, y0, x1, y1 = box
    arr[y0 : y1 + 1, x0 : x1 + 1] = colour
    if stripes:
        cols = np.arange(x0, x1 + 1)
        arr[y0 : y1 + 1, cols[(cols // 2) % 2 == 1]] = BLUE
    return Image.fromarray(arr, "RGB")


def alpha_box(img) -> tuple[int, int, int, int]:
    return foreground_bbox(np.asarray(img.getchannel("A")) >= 128)


def assert_centred(img, ratio=0.85, tol=0.02):
    n = img.size[0]
    x0, y0, x1, y1 = alpha_box(img)
    assert abs(max(x1 - x0 + 1, y1 - y0 + 1) / n - ratio) < tol
    assert abs(x0 - (n - 1 - x1)) <= 2 and abs(y0 - (n - 1 - y1)) <= 2


def test_big_photo_gives_a_bounded_cutout(tiny_matting):  # noqa: F811
    # 6000×4500 with the object almost as wide: its own square would be 6823².
    box = (300, 600, 5699, 3899)
    res = prepare_image(photo((6000, 4500), box))
    assert res.image.size == (MAX_CUTOUT_SIDE, MAX_CUTOUT_SIDE)
    assert res.background_removed and res.source_size == (6000, 4500)
    # in source pixels, as exact as the matte: rembg upsamples u2net's 320² output, whose
    # edge blur spans a few of its pixels (6000 / 320 ≈ 19 source pixels each)
    assert all(abs(a - b) <= 3 * 6000 / 320 for a, b in zip(res.bbox, box)), res.bbox
    assert_centred(res.image)


def test_explicit_size_wins_over_the_cap(tiny_matting):  # noqa: F811
    res = prepare_image(photo((5000, 3000), (500, 500, 4499, 2499)), size=3000)
    assert res.image.size == (3000, 3000)
    assert_centred(res.image)
    res = prepare_image(photo((5000, 3000), (500, 500, 4499, 2499)), max_side=512)
    assert res.image.size == (512, 512)


@pytest.mark.parametrize("matted", [True, False])
def test_small_object_in_big_photo_keeps_its_pixels(tiny_matting, matted):  # noqa: F811
    # A 1200×900 object in a 7000×5000 photo: the working copy shrinks it 3.4×, which
    # would wash out its 2-px stripes; the cut-out (1411², under the cap) must be cut
    # from the photo itself, pixel for pixel.
    box = (2000, 1500, 3199, 2399)
    src = photo((7000, 5000), box, stripes=True)
    if not matted:
        alpha = Image.new("L", src.size, 0)
        alpha.paste(255, (box[0], box[1], box[2] + 1, box[3] + 1))
        src.putalpha(alpha)
    res = prepare_image(src)
    assert res.background_removed is matted
    if not matted:  # the image's own alpha: the box is exact
        assert res.bbox == box and res.image.size == (1411, 1411)
    x0, y0, x1, y1 = res.bbox
    assert res.image.size[0] == square_side(x1 - x0 + 1, y1 - y0 + 1, 0.85) < MAX_CUTOUT_SIDE
    x0, y0, x1, y1 = alpha_box(res.image)
    got = np.asarray(res.image)[y0 + 50 : y1 - 50, x0 + 50 : x1 - 50, :3]
    # the two stripe colours, not their blend (115, 30, 115)
    reds = np.abs(got.astype(int) - RED).max(axis=2) <= 2
    blues = np.abs(got.astype(int) - BLUE).max(axis=2) <= 2
    assert (reds | blues).mean() > 0.99 and 0.4 < reds.mean() < 0.6


def test_big_cutout_with_real_alpha_has_no_dark_fringe():
    # Colour under transparent pixels is black here; the downscaled cut-out's soft
    # edge must stay the object's colour (premultiplied resampling).
    size = 3000
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    r = np.hypot(xx - 1500, yy - 1500)
    alpha = np.clip((1200 - r) * 0.5 + 128, 0, 255).astype(np.uint8)  # soft-edged disc, 2823² square
    arr = np.zeros((size, size, 4), np.uint8)
    arr[..., :3] = np.where(alpha[..., None] > 0, RED, 0)
    arr[..., 3] = alpha
    res = prepare_image(Image.fromarray(arr, "RGBA"))
    assert res.had_alpha and not res.background_removed
    assert res.image.size == (MAX_CUTOUT_SIDE, MAX_CUTOUT_SIDE)
    out = np.asarray(res.image).astype(int)
    edge = (out[..., 3] > 20) & (out[..., 3] < 235)
    assert edge.sum() > 500
    assert np.abs(out[edge][:, :3].mean(axis=0) - RED).max() <= 6


def test_working_copy_is_what_the_matting_model_sees(tiny_matting, monkeypatch):  # noqa: F811
    from instantmesh_cli.images import BackgroundRemover

    seen = []
    real = BackgroundRemover.mask

    def spy(self, rgb):
        seen.append(rgb.size)
        return real(self, rgb)

    monkeypatch.setattr(BackgroundRemover, "mask", spy)
    prepare_image(photo((6000, 4000), (1000, 1000, 4999, 2999)))
    prepare_image(photo((800, 600), (100, 100, 499, 399)))
    assert seen == [(WORK_MAX_SIDE, round(4000 * WORK_MAX_SIDE / 6000)), (800, 600)]


def test_prepare_cli_writes_bounded_png(tiny_matting, tmp_path, capsys):  # noqa: F811
    src = tmp_path / "big.jpg"
    photo((4000, 3000), (200, 200, 3799, 2799)).save(src, quality=90)
    out = tmp_path / "cut.png"
    assert run(["prepare", str(src), "-o", str(out)]) == 0
    assert f"{MAX_CUTOUT_SIDE}×{MAX_CUTOUT_SIDE} cut-out" in capsys.readouterr().err
    assert Image.open(out).size == (MAX_CUTOUT_SIDE, MAX_CUTOUT_SIDE)
    assert run(["prepare", str(src), "-o", str(out), "--size", "2500"]) == 0
    assert Image.open(out).size == (2500, 2500)
