"""Alpha and placement: is there a cut-out, where is the object, and how it sits on the square canvas."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL.Image import Image

# An alpha channel is "real" when enough of it is below opaque to describe a shape.
# A few stray non-opaque pixels (some editors write 254s at the border) do not make
# a cut-out; 0.1% of the pixels does not lose any genuine one.
ALPHA_OPAQUE = 250
ALPHA_MIN_FRACTION = 0.001
# Foreground present = at least one pixel at least this opaque (out of 255).
FOREGROUND_MIN_ALPHA = 32
# The object's box counts pixels with alpha above this. InstantMesh uses alpha > 0,
# so one invisible speck (a matting false positive at alpha 1, Lanczos ringing of the
# upsampled matte, JPEG noise) far from the object shrinks the object on the canvas.
# Alpha ≤ 8 blends at most 3% of a colour into the white background: invisible to
# Zero123++, so leaving it out of the box (and cropping it away) loses nothing.
BBOX_MIN_ALPHA = 8

Box = tuple[int, int, int, int]


def has_real_alpha(img: "Image") -> bool:
    """Whether the image's alpha channel describes a cut-out.

    Judged by content, not mode: RGBA files that are fully opaque (exports from many
    tools) or fully transparent (nothing to keep) do not count.
    """
    import numpy as np

    if img.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        if "transparency" not in img.info:
            return False
        img = img.convert("RGBA")
    alpha = np.asarray(img.getchannel("A"))
    if alpha.max(initial=0) < FOREGROUND_MIN_ALPHA:
        return False
    return float((alpha < ALPHA_OPAQUE).mean()) >= ALPHA_MIN_FRACTION


def foreground_bbox(alpha, threshold: int = 0) -> Box | None:
    """Inclusive bounding box ``(x0, y0, x1, y1)`` of ``alpha > threshold``; None when empty."""
    import numpy as np

    inside = np.asarray(alpha) > threshold
    rows = np.flatnonzero(inside.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(inside.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def composite_on(rgba: "Image", background: tuple[int, int, int] = (255, 255, 255)) -> "Image":
    """Flatten an RGBA image onto a solid colour (white by default) → RGB.

    Same arithmetic as InstantMesh's Zero123++ ``to_rgb_image`` (Pillow paste with the
    alpha as mask onto a 255 canvas), which the white-background UNet was trained with.
    """
    from PIL import Image as PILImage

    if rgba.mode == "RGB":
        return rgba
    rgba = rgba if rgba.mode == "RGBA" else rgba.convert("RGBA")
    out = PILImage.new("RGB", rgba.size, tuple(int(c) for c in background))
    out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return out


def square_side(width: int, height: int, foreground_ratio: float) -> int:
    """Side of the square on which a ``width × height`` object fills ``foreground_ratio``."""
    side = max(width, height)
    return max(side, int(side / foreground_ratio))


def centred(obj: "Image", side: int) -> "Image":
    """``obj`` (RGBA) in the middle of a transparent ``side²`` canvas.

    One centring step: InstantMesh pads twice, flooring each half, which can leave the
    object two pixels off centre; this way the margins differ by at most one.
    """
    from PIL import Image as PILImage

    canvas = PILImage.new("RGBA", (side, side), (0, 0, 0, 0))
    w, h = obj.size
    canvas.paste(obj, ((side - w) // 2, (side - h) // 2))
    return canvas


def recentre(rgba: "Image", bbox: Box, foreground_ratio: float) -> "Image":
    """Crop ``bbox`` (inclusive), centre it on a transparent square, pad to ``side / ratio``.

    Follows InstantMesh's ``resize_foreground`` (pad, never resample) except for the
    crop: it slices ``[y1:y2, x1:x2]`` with the *inclusive* extremes of ``alpha > 0``,
    losing the object's last row and column and shifting it by half a pixel. We keep
    the whole object: nothing downstream depends on that pixel being gone, the object
    stays exactly centred, and a one-pixel-wide object would otherwise vanish.
    """
    x0, y0, x1, y1 = bbox
    obj = rgba.crop((x0, y0, x1 + 1, y1 + 1))
    return centred(obj if obj.mode == "RGBA" else obj.convert("RGBA"), square_side(*obj.size, foreground_ratio))


def bounded_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled down (never up) so that its longer side is at most ``max_side``."""
    w, h = size
    k = max_side / max(w, h)
    if k >= 1.0:
        return w, h
    return max(1, round(w * k)), max(1, round(h * k))


def box_to_source(box: Box, scale: tuple[float, float], source_size: tuple[int, int]) -> Box:
    """An inclusive box found on a downscaled copy, in source pixels, rounded outwards.

    Outwards so that the object is never cut: the box may gain a pixel or two of
    transparent margin at the source's resolution, never lose part of the object.
    """
    sx, sy = scale
    x0, y0, x1, y1 = box
    w, h = source_size
    return (
        max(0, math.floor(x0 * sx)),
        max(0, math.floor(y0 * sy)),
        min(w - 1, math.ceil((x1 + 1) * sx) - 1),
        min(h - 1, math.ceil((y1 + 1) * sy) - 1),
    )
