"""Image loading, background removal and recentring (the instantmesh_cli.images package).

Every input is built here, synthetically; background removal runs through rembg's
real ``new_session('u2net')`` with the tiny ONNX model from tests/matting_fixture.py.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from instantmesh_cli import images
from instantmesh_cli.errors import ImeshError, InputError, UsageError, WeightsError
from instantmesh_cli.images import (
    DEFAULT_MATTING_MODEL,
    BackgroundRemover,
    composite_on,
    find_matting_model,
    foreground_bbox,
    has_real_alpha,
    load_image,
    matting_model_path,
    prepare_image,
)
from matting_fixture import empty_matting_home, tiny_matting  # noqa: F401

RED = (200, 30, 30)


# --------------------------------------------------------------------------- helpers


def scene(size=(120, 90), box=(30, 20, 70, 60), colour=RED, mode="RGB") -> Image.Image:
    """A white picture with a filled rectangle; ``box`` = inclusive (x0, y0, x1, y1)."""
    arr = np.full((size[1], size[0], 3), 255, np.uint8)
    x0, y0, x1, y1 = box
    arr[y0 : y1 + 1, x0 : x1 + 1] = colour
    img = Image.fromarray(arr, "RGB")
    return img if mode == "RGB" else img.convert(mode)


def cutout(size=(120, 90), box=(30, 20, 70, 60), colour=RED) -> Image.Image:
    """An RGBA cut-out: the rectangle opaque, everything else fully transparent."""
    arr = np.zeros((size[1], size[0], 4), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0 : y1 + 1, x0 : x1 + 1] = (*colour, 255)
    return Image.fromarray(arr, "RGBA")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes] | None) -> bytes:
    """A PNG written by hand (for 16-bit colour and lying headers Pillow will not write)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", ihdr)
    if rows is not None:
        body += chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r for r in rows)))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def alpha_of(img: Image.Image) -> np.ndarray:
    return np.asarray(img.getchannel("A"))


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "fmt, kw, tol",
    [
        ("PNG", {}, 0),
        ("JPEG", {"quality": 95}, 12),
        ("WEBP", {"lossless": True}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
        ("GIF", {}, 8),
    ],
)
def test_formats_load_as_8bit_rgb(fmt, kw, tol):
    src = scene()
    img = load_image(encode(src, fmt, **kw))
    assert img.mode == "RGB" and img.size == src.size
    assert np.abs(np.asarray(img)[40, 50].astype(int) - RED).max() <= tol
    assert np.abs(np.asarray(img)[5, 5].astype(int) - 255).max() <= tol


def test_load_from_path_and_bytes_agree(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(scene(), "PNG"))
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(load_image(path.read_bytes())))
    assert np.array_equal(np.asarray(load_image(str(path))), np.asarray(scene()))


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG", "TIFF"])
def test_exif_orientation_is_applied(fmt):
    # Stored 80×40: left half red. Orientation 6 = "rotate 90° clockwise to display",
    # so the viewer sees 40×80 with the red half on top.
    arr = np.full((40, 80, 3), 255, np.uint8)
    arr[:, :40] = RED
    stored = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    kw = {"exif": exif} if fmt != "TIFF" else {"exif": exif.tobytes()}
    if fmt == "WEBP":
        kw["lossless"] = True
    data = encode(stored, fmt, **kw)
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6  # the tag really is in the file
    img = load_image(data)
    assert img.size == (40, 80)
    out = np.asarray(img).astype(int)
    assert np.abs(out[10, 20] - RED).max() <= 12  # top: red
    assert np.abs(out[70, 20] - 255).max() <= 12  # bottom: white


def test_palette_with_transparency_becomes_rgba():
    src = cutout().convert("RGB").quantize(colors=4)  # palette image
    pal = np.asarray(src)
    bg_index = int(pal[0, 0])
    src.info["transparency"] = bg_index
    for fmt in ("PNG", "GIF"):
        img = load_image(encode(src, fmt, transparency=bg_index))
        assert img.mode == "RGBA", fmt
        a = alpha_of(img)
        assert a[0, 0] == 0 and a[40, 50] == 255, fmt
        assert has_real_alpha(img)


def test_palette_without_transparency_is_rgb():
    img = load_image(encode(scene().quantize(colors=8), "PNG"))
    assert img.mode == "RGB"
    assert np.abs(np.asarray(img)[40, 50].astype(int) - RED).max() <= 4


def test_grey_modes():
    grey = scene().convert("L")
    for mode_img, want in ((grey, "RGB"), (grey.convert("1"), "RGB")):
        img = load_image(encode(mode_img, "PNG"))
        assert img.mode == want
        arr = np.asarray(img)
        assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])
    la = Image.merge("LA", (grey, cutout().getchannel("A")))
    img = load_image(encode(la, "PNG"))
    assert img.mode == "RGBA"
    assert np.array_equal(alpha_of(img), alpha_of(cutout()))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_is_rescaled_not_clipped(fmt):
    values = np.array([0, 257, 32896, 65535], np.uint16)
    arr = np.tile(np.repeat(values, 10), (40, 1))  # 40×40
    src = Image.fromarray(arr)
    assert src.mode == "I;16"
    img = load_image(encode(src, fmt))
    assert img.mode == "RGB"
    row = np.asarray(img)[0, ::10, 0]
    assert row.tolist() == [0, 1, 128, 255]  # Pillow's convert("L") would give 0, 255, 255, 255


def test_float_and_int32_grey_tiff():
    ramp = np.tile(np.linspace(0.0, 1.0, 40, dtype=np.float32), (40, 1))
    img = load_image(encode(Image.fromarray(ramp, "F"), "TIFF"))
    row = np.asarray(img)[0, :, 0]
    assert img.mode == "RGB" and row[0] == 0 and row[-1] == 255 and np.all(np.diff(row.astype(int)) >= 0)
    wide = Image.fromarray((ramp * 65535).astype(np.int32), "I")
    row = np.asarray(load_image(encode(wide, "TIFF")))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and 120 <= row[20] <= 135
    narrow = Image.fromarray((ramp * 200).astype(np.int32), "I")
    assert np.asarray(load_image(encode(narrow, "TIFF")))[0, -1, 0] == 200


def test_16bit_grey_with_trns_transparency():
    arr = np.full((40, 40), 65535, np.uint16)
    arr[10:30, 10:30] = 1000
    src = Image.fromarray(arr)
    img = load_image(encode(src, "PNG", transparency=65535))
    assert img.mode == "RGBA"
    a = alpha_of(img)
    assert a[0, 0] == 0 and a[20, 20] == 255


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (6, 4)])
def test_16bit_colour_png(colour_type, channels):
    w = h = 40
    px = np.zeros((h, w, channels), ">u2")
    px[..., 0] = 0xC8FF  # red 200
    px[..., 1] = 0x1E00  # green 30
    px[..., 2] = 0x1E80  # blue 30
    if channels == 4:
        px[..., 3] = 0xFFFF
        px[:10, :, 3] = 0
    data = png_bytes(w, h, 16, colour_type, [px[y].tobytes() for y in range(h)])
    img = load_image(data)
    assert img.mode == ("RGBA" if channels == 4 else "RGB")
    assert np.abs(np.asarray(img)[20, 20, :3].astype(int) - RED).max() <= 1
    if channels == 4:
        assert alpha_of(img)[5, 5] == 0 and alpha_of(img)[20, 20] == 255


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    cmyk = Image.new("CMYK", (40, 40), (255, 0, 0, 0))  # pure cyan
    img = load_image(encode(cmyk, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    assert img.mode == "RGB"
    r, g, b = np.asarray(img)[20, 20].astype(int)
    assert r <= 10 and g >= 245 and b >= 245


def swapped_primaries_profile() -> bytes:
    """sRGB's ICC profile with the red and green primaries swapped (tag table edit)."""
    prof = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", prof[128:132])[0]
    entries = {bytes(prof[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, g = entries[b"rXYZ"], entries[b"gXYZ"]
    prof[r + 4 : r + 12], prof[g + 4 : g + 12] = prof[g + 4 : g + 12], prof[r + 4 : r + 12]
    return bytes(prof)


def test_icc_profile_is_honoured_and_broken_profile_ignored():
    src = scene()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    same = load_image(encode(src, "PNG", icc_profile=srgb))
    assert np.abs(np.asarray(same).astype(int) - np.asarray(src)).max() <= 2
    broken = load_image(encode(src, "PNG", icc_profile=b"not a profile" * 10))
    assert np.array_equal(np.asarray(broken), np.asarray(src))
    # Stored "red" in a space whose red primary is sRGB's green: it must come out green.
    red = Image.new("RGB", (40, 40), (255, 0, 0))
    for fmt in ("PNG", "JPEG"):
        out = np.asarray(load_image(encode(red, fmt, icc_profile=swapped_primaries_profile())))[20, 20].astype(int)
        assert out[0] <= 10 and out[1] >= 240 and out[2] <= 10, (fmt, out)
    rgba = cutout()
    rgba.paste((255, 0, 0, 255), (30, 20, 71, 61))
    out = load_image(encode(rgba, "PNG", icc_profile=swapped_primaries_profile()))
    assert out.mode == "RGBA" and np.array_equal(alpha_of(out), alpha_of(rgba))
    assert np.asarray(out)[40, 50, 1] >= 240


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_first_frame_of_animation(fmt):
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    frames = [Image.new("RGB", (48, 48), c) for c in colours]
    kw = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    if fmt == "WEBP":
        kw["lossless"] = True
    data = encode(frames[0], fmt, **kw)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    img = load_image(data)
    assert np.abs(np.asarray(img)[24, 24].astype(int) - colours[0]).max() <= 8


# --------------------------------------------------------------------------- broken inputs


def test_refusals(tmp_path):
    good_png = encode(scene(), "PNG")
    good_jpg = encode(scene(size=(400, 300), box=(20, 20, 380, 280)), "JPEG")
    cases = {
        "empty.png": (b"", "empty"),
        "truncated.png": (good_png[: len(good_png) // 2], "truncated or corrupt"),
        "truncated.jpg": (good_jpg[: len(good_jpg) // 3], "truncated or corrupt"),
        "text.png": (b"hello, I am not an image\n" * 20, "not an image"),
        "photo.heic": (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 200, "HEIC"),
        "tiny.png": (encode(Image.new("RGB", (10, 10)), "PNG"), "10×10"),
        "bomb.png": (png_bytes(20000, 20000, 8, 2, None), "400.0 megapixels, over the limit of 64 megapixels"),
        "big.png": (png_bytes(9000, 9000, 8, 2, None), "9000×9000 = 81.0 megapixels, over the limit of 64"),
    }
    for fname, (data, words) in cases.items():
        path = tmp_path / fname
        path.write_bytes(data)
        with pytest.raises(InputError) as err:
            load_image(path)
        msg = str(err.value)
        assert words in msg and fname in msg and "\n" not in msg, (fname, msg)

    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        load_image(tmp_path)


def test_documented_pixel_limit_decides_not_pillows(monkeypatch):
    # Pillow's own guard refuses above 2 × 89.5 MP and lets 64-179 MP through; the
    # documented limit is IMESH_MAX_PIXELS (64 MP), both ways, and the message says so.
    monkeypatch.delenv(images.MAX_PIXELS_ENV, raising=False)
    for w, h in ((10000, 10000), (30000, 30000), (8001, 8000)):
        with pytest.raises(InputError) as err:
            load_image(png_bytes(w, h, 8, 2, None), name="huge.png")
        msg = str(err.value)
        assert "over the limit of 64 megapixels" in msg and images.MAX_PIXELS_ENV in msg, msg
        assert f"{w * h / 1e6:.1f} megapixels" in msg and "\n" not in msg
    # raised past Pillow's default threshold: the header is accepted, the (missing) pixel
    # data is what fails
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "1e9")
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(png_bytes(20000, 20000, 8, 2, None), name="raised.png")
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "0")
    with pytest.raises(UsageError, match="positive"):
        load_image(png_bytes(100, 100, 8, 2, None))


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    data = encode(scene(size=(100, 100), box=(10, 10, 20, 20)), "PNG")
    with pytest.raises(InputError, match="over the limit"):
        load_image(data, max_pixels=5000)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "9000")
    with pytest.raises(InputError, match="over the limit"):
        load_image(data)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "20000")
    assert load_image(data).size == (100, 100)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "lots")
    with pytest.raises(UsageError):
        load_image(data)
    monkeypatch.delenv(images.MAX_PIXELS_ENV)
    path = tmp_path / "big-file.png"
    path.write_bytes(data)
    monkeypatch.setattr(images.loading, "MAX_FILE_BYTES", len(data) - 1)
    with pytest.raises(InputError, match="big-file.png is .* GiB, too large"):
        load_image(path)


# --------------------------------------------------------------------------- alpha / recentring


def test_has_real_alpha_judges_content_not_mode():
    assert has_real_alpha(cutout())
    assert not has_real_alpha(scene(mode="RGBA"))  # RGBA, fully opaque
    assert not has_real_alpha(scene())
    clear = cutout()
    clear.putalpha(0)
    assert not has_real_alpha(clear)  # fully transparent: nothing to keep
    almost = np.asarray(scene(mode="RGBA")).copy()
    almost[0, :3, 3] = 254  # three stray pixels from an editor
    assert not has_real_alpha(Image.fromarray(almost, "RGBA"))


@pytest.mark.parametrize(
    "size, box, ratio",
    [
        ((120, 90), (30, 20, 70, 60), 0.85),  # 41×41
        ((200, 100), (10, 30, 150, 59), 0.85),  # wide 141×30
        ((100, 200), (40, 5, 59, 190), 0.5),  # tall, odd height
        ((64, 64), (0, 0, 63, 62), 1.0),  # fills the frame but one row
        ((90, 70), (17, 12, 18, 50), 0.7),  # 2 px wide
        ((300, 300), (10, 10, 93, 176), 0.85),  # 84×167 → 196²: two floored pads would be 2 px off
    ],
)
def test_recentring_is_centred_and_scaled(size, box, ratio):
    src = cutout(size, box)
    res = prepare_image(src, foreground_ratio=ratio)
    x0, y0, x1, y1 = box
    w, h = x1 - x0 + 1, y1 - y0 + 1
    side = max(w, h)
    out = res.image
    assert out.mode == "RGBA" and out.size[0] == out.size[1] == max(side, int(side / ratio))
    assert res.bbox == box and res.had_alpha and not res.background_removed
    ox0, oy0, ox1, oy1 = foreground_bbox(alpha_of(out))
    n = out.size[0]
    # the whole object is there (inclusive bbox: no lost row or column)
    assert (ox1 - ox0 + 1, oy1 - oy0 + 1) == (w, h)
    # centred: margins on each side differ by at most one pixel
    assert abs(ox0 - (n - 1 - ox1)) <= 1 and abs(oy0 - (n - 1 - oy1)) <= 1
    # longest side ≈ ratio × canvas
    assert abs(side / n - ratio) <= 1.0 / n + 1e-9 or (ratio == 1.0 and side == n)
    # pixels are copied, not resampled
    assert np.array_equal(np.asarray(out)[oy0 : oy1 + 1, ox0 : ox1 + 1], np.asarray(src)[y0 : y1 + 1, x0 : x1 + 1])


def test_one_pixel_object_survives():
    # The reference's [y1:y2, x1:x2] crop would give an empty array for a 1-px line.
    src = cutout((64, 64), (30, 10, 30, 50))
    res = prepare_image(src)
    ox0, oy0, ox1, oy1 = foreground_bbox(alpha_of(res.image))
    assert ox1 == ox0 and oy1 - oy0 + 1 == 41


def test_invisible_specks_do_not_shrink_the_object():
    arr = np.asarray(cutout((200, 200), (80, 80, 119, 119))).copy()
    arr[2, 2] = (255, 255, 255, 8)  # invisible on white (≤ 3%): ignored
    assert prepare_image(Image.fromarray(arr, "RGBA")).bbox == (80, 80, 119, 119)
    arr[2, 2, 3] = 40  # visible: counts, as in the reference
    assert prepare_image(Image.fromarray(arr, "RGBA")).bbox == (2, 2, 119, 119)


def test_output_size_option():
    res = prepare_image(cutout(), size=320)
    assert res.image.size == (320, 320)
    a = alpha_of(res.image)
    x0, y0, x1, y1 = foreground_bbox(a >= 128)
    assert abs((x1 - x0 + 1) / 320 - 0.85) < 0.02
    # premultiplied resampling: no dark fringe from the transparent black around the object
    rgb = np.asarray(res.image)[..., :3].astype(int)
    # (a straight-alpha resample would pull half-covered edge pixels halfway to black;
    # Lanczos ringing alone moves them a little either way)
    edge = (a > 64) & (a < 192)
    assert edge.sum() > 100
    assert np.abs(rgb[edge].mean(axis=0) - RED).max() <= 8 and rgb[edge][:, 0].min() >= 150


def test_bad_ratio_and_size():
    for ratio in (0.0, -0.5, 1.5):
        with pytest.raises(UsageError):
            prepare_image(cutout(), foreground_ratio=ratio)
    with pytest.raises(UsageError):
        prepare_image(cutout(), size=0)


def test_no_foreground(empty_matting_home):  # noqa: F811
    clear = cutout()
    clear.putalpha(0)
    with pytest.raises(InputError, match="no foreground found in empty.png"):
        prepare_image(clear, remove_background=False, name="empty.png")


def test_no_rembg_on_opaque_photo_keeps_whole_frame():
    res = prepare_image(scene(), remove_background=False)
    assert res.bbox == (0, 0, 119, 89) and not res.background_removed and not res.had_alpha
    assert res.image.size == (int(120 / 0.85),) * 2


def test_composite_on_white_matches_formula():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba = Image.fromarray(arr, "RGBA")
    out = np.asarray(composite_on(rgba)).astype(float)
    a = arr[..., 3:4] / 255.0
    want = arr[..., :3] * a + 255.0 * (1 - a)
    assert out.shape == (32, 32, 3) and np.abs(out - want).max() <= 1.0
    grey = np.asarray(composite_on(rgba, (127, 127, 127))).astype(float)
    assert np.abs(grey - (arr[..., :3] * a + 127.0 * (1 - a))).max() <= 1.0
    assert composite_on(scene()) is not None and composite_on(scene()).mode == "RGB"


# --------------------------------------------------------------------------- background removal (tiny model)


def test_alpha_is_kept_when_real(empty_matting_home):  # noqa: F811
    # No matting model exists: if prepare tried rembg it would fail. It must not try.
    res = prepare_image(cutout(), remover=BackgroundRemover(offline=True))
    assert res.had_alpha and not res.background_removed and res.matting_model is None


def test_background_removed_with_tiny_model(tiny_matting):  # noqa: F811
    box = (50, 40, 129, 159)
    src = scene(size=(300, 200), box=box)
    remover = BackgroundRemover()
    mask = np.asarray(remover.mask(src)) >= 128
    truth = np.zeros_like(mask)
    truth[box[1] : box[3] + 1, box[0] : box[2] + 1] = True
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95, iou

    res = prepare_image(src, remover=remover)
    assert res.background_removed and res.matting_model == DEFAULT_MATTING_MODEL and not res.had_alpha
    # the object's box, allowing for the mask's resampling blur (320² → source size)
    assert all(abs(a - b) <= 4 for a, b in zip(res.bbox, box))
    a = alpha_of(res.image)
    x0, y0, x1, y1 = foreground_bbox(a >= 128)
    n = res.image.size[0]
    assert abs((y1 - y0 + 1) / n - 0.85) < 0.05
    assert abs(x0 - (n - 1 - x1)) <= 2 and abs(y0 - (n - 1 - y1)) <= 2
    # straight alpha: the colours are exactly the photo's (rembg's own cut-out would
    # darken every partly transparent pixel towards black)
    cut = remover.cutout(src)
    assert np.array_equal(np.asarray(cut)[..., :3], np.asarray(src))
    soft = (alpha_of(cut) > 10) & (alpha_of(cut) < 245)
    assert soft.sum() > 50


def test_session_is_created_once(tiny_matting, monkeypatch):  # noqa: F811
    from instantmesh_cli.images import rembg_sessions

    rembg_sessions.load()
    factory = sys.modules["rembg.session_factory"]
    calls = []
    real = factory.new_session

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(factory, "new_session", counting)
    remover = BackgroundRemover()
    for i in range(3):
        prepare_image(scene(box=(20 + i, 20, 60, 60)), remover=remover)
    assert calls == [(DEFAULT_MATTING_MODEL,)]  # explicit model name, never rembg's bria-rmbg default


def test_white_image_has_no_foreground(tiny_matting):  # noqa: F811
    with pytest.raises(InputError, match="no foreground found in blank.png"):
        prepare_image(Image.new("RGB", (64, 64), "white"), name="blank.png")


def test_remove_background_forced_on_rgba(tiny_matting):  # noqa: F811
    # True = matte the colour channels even though the image has alpha: the result
    # follows the colours (the whole red box), not the alpha (only its left half).
    box = (30, 20, 70, 60)
    arr = np.asarray(scene(box=box).convert("RGBA")).copy()
    arr[..., 3] = 0
    arr[20:61, 30:50, 3] = 255
    src = Image.fromarray(arr, "RGBA")
    assert prepare_image(src).bbox == (30, 20, 49, 60)  # automatic: the alpha is kept
    res = prepare_image(src, remove_background=True)
    assert res.background_removed and res.had_alpha
    assert all(abs(p - q) <= 4 for p, q in zip(res.bbox, box)), res.bbox


def test_other_model_names(tiny_matting):  # noqa: F811
    tiny_matting.install("silueta")
    res = prepare_image(scene(), remover=BackgroundRemover("silueta"))
    assert res.matting_model == "silueta"
    with pytest.raises(UsageError, match="unknown matting model 'nope'.*u2net"):
        BackgroundRemover("nope").session
    with pytest.raises(UsageError, match="cannot be used here"):
        BackgroundRemover("u2net_custom").session


def test_missing_model_offline_names_file_place_and_url(empty_matting_home):  # noqa: F811
    with pytest.raises(WeightsError) as err:
        prepare_image(scene(), remover=BackgroundRemover(offline=True))
    msg = str(err.value)
    assert "u2net.onnx" in msg and str(empty_matting_home) in msg
    assert "https://github.com/danielgatis/rembg/releases/download/" in msg and "\n" not in msg


def test_offline_env_is_honoured(empty_matting_home, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert BackgroundRemover().offline
    with pytest.raises(WeightsError, match="offline"):
        BackgroundRemover().session


def test_missing_model_download_failure(empty_matting_home, monkeypatch):  # noqa: F811
    import pooch
    import requests

    def no_network(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'github.com'")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    with pytest.raises(WeightsError) as err:
        BackgroundRemover("isnet-general-use", offline=False).session
    msg = str(err.value)
    assert "could not be downloaded" in msg and "github.com" in msg and "isnet-general-use.onnx" in msg


def test_corrupt_model_file(tiny_matting):  # noqa: F811
    path = matting_model_path()
    path.write_bytes(b"this is not onnx")
    with pytest.raises(WeightsError, match="cannot be loaded"):
        BackgroundRemover().session


def test_rembg_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "rembg", None)
    with pytest.raises(ImeshError, match="rembg or onnxruntime is not installed"):
        BackgroundRemover().session


# --------------------------------------------------------------------------- model path (doctor)


@pytest.mark.parametrize(
    "env",
    [
        {"U2NET_HOME": "u2"},
        {"REMBG_HOME": "rh"},
        {"XDG_DATA_HOME": "xdg"},
        {"XDG_DATA_HOME": "xdg", "REMBG_HOME": "rh"},
        {},
    ],
)
@pytest.mark.parametrize("legacy_file", [False, True])
def test_model_path_agrees_with_rembg(tmp_path, monkeypatch, env, legacy_file):
    from rembg.sessions.u2net import U2netSession

    for var in ("U2NET_HOME", "REMBG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var, sub in env.items():
        monkeypatch.setenv(var, str(tmp_path / sub))

    assert str(images.rembg_home()) == U2netSession.rembg_home()
    assert find_matting_model("u2net") is None
    want = os.path.join(U2netSession.model_dir(), "u2net.onnx")
    assert str(matting_model_path("u2net")) == want
    if legacy_file:
        legacy = os.path.join(U2netSession.legacy_home(), "u2net.onnx")
        os.makedirs(os.path.dirname(legacy), exist_ok=True)
        open(legacy, "wb").close()
        assert str(matting_model_path("u2net")) == U2netSession.resolve_existing("u2net.onnx") == legacy
        assert find_matting_model("u2net") is not None


def test_import_is_light():
    code = (
        "import sys, instantmesh_cli.images as m; "
        "heavy = [n for n in ('rembg', 'onnxruntime', 'numpy', 'PIL', 'torch') if n in sys.modules]; "
        "print(m.DEFAULT_MATTING_MODEL, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "u2net []"
