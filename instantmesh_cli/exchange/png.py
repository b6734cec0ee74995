"""Texture PNGs with nothing in them but the pixels.

glTF 2.0 defines ``baseColorTexture`` as sRGB and asks that PNGs carry no colour-space
information of their own (the Khronos validator warns, IMAGE_FEATURES_UNSUPPORTED, on an
iCCP, sRGB, gAMA or cHRM chunk). An untagged PNG is read as sRGB by image tools too, so
OBJ's side-file texture is the same. Pillow writes only IHDR, IDAT and IEND for an image
with an empty ``info`` dict; an ICC profile made by littlecms would also carry its
creation time, which made every GLB differ from the last.
"""

from __future__ import annotations

import io

import numpy as np

# Pillow's default level, stated so that the bytes do not follow a change of default.
COMPRESS_LEVEL = 6


def texture_image(texture: np.ndarray):
    """The texture (uint8 H x W x 3, row 0 at the top) as a PIL RGB image with no metadata."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(texture, dtype=np.uint8), "RGB")
    img.info.clear()
    return img


def encode_png(texture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    texture_image(texture).save(buf, format="PNG", compress_level=COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()
