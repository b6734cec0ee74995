"""The multi-core PNG encoder: lossless, standard, byte-stable whatever the cores, about Pillow's size."""

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from instantmesh_cli.exchange import png


def smooth(h, w, c=3):
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [np.sin(xx / 37.0) * 60 + 120, np.cos(yy / 53.0) * 50 + 100, (xx + yy) % 256, (xx * 3) % 256]
    return np.stack(planes[:c], -1).astype(np.uint8)


def chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        at += 12 + length
    return kinds


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 4), (63, 5, 3), (64, 9, 3), (65, 9, 4), (200, 131, 3)])
def test_pillow_decodes_the_same_pixels_and_only_the_three_chunks(shape):
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 2] = smooth(shape[0] // 2, shape[1], shape[2])  # smooth rows too, so every filter gets picked
    data = png.encode_png(pixels)
    back = Image.open(io.BytesIO(data))
    assert back.mode == ("RGB" if shape[2] == 3 else "RGBA")
    assert np.array_equal(np.asarray(back), pixels)
    assert chunks(data) == [b"IHDR", b"IDAT", b"IEND"]


def _reference_filter(rows: np.ndarray, above) -> np.ndarray:
    """The PNG specification's filters and libpng's choice, written out pixel by pixel."""
    h, w, c = rows.shape
    out = []
    prev = [0] * (w * c) if above is None else [int(v) for v in above.reshape(-1)]
    for r in range(h):
        x = [int(v) for v in rows[r].reshape(-1)]
        cands = []
        for kind in range(5):
            line = []
            for i, v in enumerate(x):
                a = x[i - c] if i >= c else 0
                b = prev[i]
                cc = prev[i - c] if i >= c else 0
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = [0, a, b, (a + b) // 2, a if pa <= pb and pa <= pc else (b if pb <= pc else cc)][kind]
                line.append((v - pred) % 256)
            cands.append(line)
        costs = [sum(min(v, 256 - v) for v in line) for line in cands]
        best = costs.index(min(costs))
        out.append([best] + cands[best])
        prev = x
    return np.array(out, np.uint8)


def test_the_filters_and_their_choice_follow_the_specification():
    rng = np.random.default_rng(3)
    rows = np.concatenate([smooth(4, 6), rng.integers(0, 256, (3, 6, 3), dtype=np.uint8)])
    above = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    got = png.filter_rows(rows, above)
    assert np.array_equal(got, _reference_filter(rows, above))
    assert len(set(got[:, 0])) > 1  # a test of the choice, not of one filter
    assert np.array_equal(png.filter_rows(rows, None), _reference_filter(rows, None))


def test_the_bytes_do_not_depend_on_how_many_cores_encode_them(monkeypatch):
    pixels = smooth(300, 257)
    pixels[::7, ::3] = 255
    for workers in (1, 5):
        pool = ThreadPoolExecutor(max_workers=workers)
        monkeypatch.setattr(png, "_pool", lambda: pool)
        if workers == 1:
            one = png.encode_png(pixels)
        else:
            assert png.encode_png(pixels) == one


@pytest.mark.parametrize("kind, bound", [("noisy", 1.01), ("flat", 1.05)])
def test_about_the_size_of_pillows_png(kind, bound):
    """Restarting the deflate window per band costs a little on very compressible images, nothing on noisy ones."""
    pixels = smooth(512, 512)
    if kind == "noisy":  # like a baked texture of a photographed object
        pixels = (pixels // 2 + np.random.default_rng(0).integers(0, 40, pixels.shape)).astype(np.uint8)
    else:
        pixels[::5, ::11] = 0
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=png.COMPRESS_LEVEL)
    assert len(png.encode_png(pixels)) <= len(buf.getvalue()) * bound


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 2), (0, 4, 3), (4, 4, 5)])
def test_other_shapes_are_refused(shape):
    with pytest.raises(ValueError, match="PNG image"):
        png.encode_png(np.zeros(shape, np.uint8))
