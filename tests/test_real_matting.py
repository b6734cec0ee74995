"""Background removal with rembg's real u2netp model on photographs with a known silhouette.

The object is scikit-image's horse silhouette (its anti-aliased edge is the known
alpha) filled with a real photograph (scikit-image's cat and coffee pictures) and
composited onto other real photographs, defocused as a shallow depth of field would
or left sharp. The model is genuine (tests/matting_fixture.py checks its md5), so
these tests measure what imesh's BackgroundRemover and prepare_image really do.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from instantmesh_cli.cli import run
from instantmesh_cli.images import BackgroundRemover, foreground_bbox, prepare_image
from matting_fixture import real_u2netp  # noqa: F401

MIN_IOU = 0.9


def _photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def known_alpha(size: tuple[int, int]) -> Image.Image:
    """The horse, resized with its anti-aliased edge (scikit-image gives True = background)."""
    import skimage.data

    horse = Image.fromarray(np.where(skimage.data.horse(), 0, 255).astype(np.uint8), "L")
    return horse.resize(size, Image.Resampling.LANCZOS)


def background(name: str, size: tuple[int, int], blur: float) -> Image.Image:
    img = _photo(name)
    w, h = img.size
    k = max(size[0] / w, size[1] / h)
    img = img.resize((int(np.ceil(w * k)), int(np.ceil(h * k))), Image.Resampling.LANCZOS).crop((0, 0, *size))
    return img.filter(ImageFilter.GaussianBlur(blur)) if blur else img


def scene(bg: str, blur: float, texture: str, size=(640, 480), obj=(400, 328), at=(120, 90)):
    """(photo, true alpha of the whole photo)."""
    alpha = known_alpha(obj)
    photo = background(bg, size, blur)
    photo.paste(_photo(texture).resize(obj, Image.Resampling.LANCZOS), at, alpha)
    truth = Image.new("L", size, 0)
    truth.paste(alpha, at)
    return photo, truth


def iou(a, b) -> float:
    a, b = np.asarray(a) >= 128, np.asarray(b) >= 128
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize(
    "bg, blur, texture",
    [
        ("rocket", 6, "chelsea"),  # launch pad behind, out of focus
        ("astronaut", 6, "coffee"),  # a portrait behind, out of focus
        ("gravel", 0, "coffee"),  # sharp textured ground
        ("grass", 0, "chelsea"),  # sharp grass
    ],
)
def test_real_model_finds_the_silhouette(real_u2netp, bg, blur, texture):  # noqa: F811
    photo, truth = scene(bg, blur, texture)
    mask = BackgroundRemover("u2netp").mask(photo)
    assert mask.size == photo.size and mask.mode == "L"
    assert iou(mask, truth) >= MIN_IOU, iou(mask, truth)


def test_real_model_cutout_of_a_big_photo_is_bounded_and_right(real_u2netp, tmp_path, capsys):  # noqa: F811
    # 6000×4000, the object 3000 px wide: matted and measured on the ≤2048 working copy,
    # written at 2048² (the object's own square would be 3529²), silhouette intact.
    size, obj, at = (6000, 4000), (3000, 2460), (1400, 900)
    photo, truth = scene("rocket", 30, "chelsea", size=size, obj=obj, at=at)
    src = tmp_path / "big.jpg"
    photo.save(src, quality=90)
    out = tmp_path / "cut.png"
    assert run(["prepare", str(src), "-o", str(out), "--matting", "u2netp"]) == 0
    assert "background removed with u2netp" in capsys.readouterr().err
    cut = Image.open(out)
    assert cut.mode == "RGBA" and cut.size == (2048, 2048)

    # The same placement applied to the true alpha is what the cut-out's alpha must match.
    truth_rgba = Image.new("RGBA", size, (0, 0, 0, 0))
    truth_rgba.putalpha(truth)
    want = prepare_image(truth_rgba, remove_background=False, size=2048).image.getchannel("A")
    assert iou(cut.getchannel("A"), want) >= MIN_IOU, iou(cut.getchannel("A"), want)
    x0, y0, x1, y1 = foreground_bbox(np.asarray(cut.getchannel("A")) >= 128)
    assert abs(max(x1 - x0 + 1, y1 - y0 + 1) / 2048 - 0.85) < 0.03
