"""From a loaded photo to the condition image: matte, find the object, centre it.

Work happens on a copy no larger than :data:`WORK_MAX_SIDE`: the matting models see
320² or 1024² anyway, and the object's box only needs to be right to a few source
pixels. The cut-out itself is then cut from the full-resolution photo and written
at no more than :data:`MAX_CUTOUT_SIDE` unless a size is asked for, so a 48 MP photo
costs about what a 4 MP one does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from instantmesh_cli.errors import InputError, UsageError
from instantmesh_cli.images.geometry import (
    BBOX_MIN_ALPHA,
    FOREGROUND_MIN_ALPHA,
    Box,
    bounded_size,
    box_to_source,
    centred,
    composite_on,
    foreground_bbox,
    has_real_alpha,
    square_side,
)
from instantmesh_cli.images.loading import normalize_image
from instantmesh_cli.images.matting import DEFAULT_MATTING_MODEL, BackgroundRemover

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL.Image import Image

# Longest side of the copy that is matted and measured. Twice the 1024² input of the
# largest rembg models, so no model sees a picture that was downscaled below its input.
WORK_MAX_SIDE = 2048
# Longest side of a cut-out written without an explicit size. Zero123++ conditions on
# 320², so this keeps every detail it can use many times over, and `imesh prepare` on
# a 48 MP photo writes a few MB instead of a 9411² (~90 MB) PNG.
MAX_CUTOUT_SIDE = 2048
# Pillow's resize first box-reduces by an integer factor to within this factor of the
# target, then applies Lanczos: on a 48 MP photo a fraction of the time of a full
# Lanczos pass, and no visible difference after Zero123++'s own 320² resize.
_REDUCING_GAP = 1.5
# The object is box-reduced to no less than this multiple of its final scale before
# it is padded, keeping the padded square small whatever the photo's size; the final
# Lanczos pass then does the rest of the reduction.
_OVERSAMPLING = 2


@dataclass(frozen=True)
class PreparedImage:
    """The condition image for the multi-view stage.

    ``image``: square RGBA, the object centred, its longer side ≈ ``foreground_ratio`` of
    the canvas. ``bbox``: inclusive ``(x0, y0, x1, y1)`` of the object in the source image.
    """

    image: "Image"
    had_alpha: bool
    background_removed: bool
    matting_model: str | None
    bbox: Box
    source_size: tuple[int, int]
    foreground_ratio: float

    @property
    def rgba(self) -> "Image":
        return self.image

    def on_white(self) -> "Image":
        return composite_on(self.image)


def prepare_image(
    img: "Image",
    *,
    remove_background: bool | None = None,
    remover: BackgroundRemover | None = None,
    matting_model: str = DEFAULT_MATTING_MODEL,
    foreground_ratio: float = 0.85,
    size: int | None = None,
    max_side: int = MAX_CUTOUT_SIDE,
    name: str = "the image",
) -> PreparedImage:
    """Cut out the object and centre it on a square transparent canvas.

    ``remove_background``: None = automatic (keep a real alpha channel, else run
    rembg), True = always matte the colour channels, False = never (the image's alpha,
    or full opacity, is used as is). ``remover`` reuses a :class:`BackgroundRemover`
    across images; otherwise one is made for ``matting_model``. ``size``: the square's
    side in pixels. Without it the object keeps its own resolution (pixels copied, not
    resampled) unless the square would be larger than ``max_side``, which it is then
    scaled down to.
    """
    from PIL import Image as PILImage

    if not 0.0 < foreground_ratio <= 1.0:
        raise UsageError(f"foreground ratio must be in (0, 1], got {foreground_ratio}")
    if size is not None and size < 1:
        raise UsageError(f"output size must be positive, got {size}")
    if max_side < 1:
        raise UsageError(f"maximum output size must be positive, got {max_side}")

    if img.mode not in ("RGB", "RGBA"):
        img = normalize_image(img)
    real_alpha = has_real_alpha(img)
    do_remove = (not real_alpha) if remove_background is None else bool(remove_background)

    work_size = bounded_size(img.size, WORK_MAX_SIDE)
    work = img if work_size == img.size else img.resize(work_size, PILImage.Resampling.LANCZOS,
                                                        reducing_gap=_REDUCING_GAP)
    if do_remove:
        remover = remover or BackgroundRemover(matting_model)
        matte = remover.mask(work.convert("RGB"))
        used_model: str | None = remover.model
    else:
        matte = work.getchannel("A") if work.mode == "RGBA" else PILImage.new("L", work.size, 255)
        used_model = None

    if matte.getextrema()[1] < FOREGROUND_MIN_ALPHA:
        raise InputError(f"no foreground found in {name}",
                         hint="the cut-out is empty; try another --matting model or an image with alpha")
    work_box = foreground_bbox(matte, BBOX_MIN_ALPHA)
    assert work_box is not None  # max alpha ≥ FOREGROUND_MIN_ALPHA > BBOX_MIN_ALPHA

    scale = (img.size[0] / work.size[0], img.size[1] / work.size[1])
    box = box_to_source(work_box, scale, img.size)
    if not do_remove and img.mode == "RGBA" and work is not img:
        box = _refine(img, box, scale)
    x0, y0, x1, y1 = box
    natural = square_side(x1 - x0 + 1, y1 - y0 + 1, foreground_ratio)
    side = size if size is not None else min(natural, max_side)
    factor = max(1, natural // (_OVERSAMPLING * side))

    obj = _object(img, box, factor, matte if do_remove else None, _work_region(box, scale))
    # Padded first, resampled as a whole (transparent margin included) as the reference
    # does, so the object's outline gets sub-pixel anti-aliasing.
    square = centred(obj, square_side(*obj.size, foreground_ratio))
    if square.size[0] != side:
        square = square.resize((side, side), PILImage.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    return PreparedImage(
        image=square,
        had_alpha=real_alpha,
        background_removed=do_remove,
        matting_model=used_model,
        bbox=box,
        source_size=img.size,
        foreground_ratio=foreground_ratio,
    )


def _refine(img: "Image", box: Box, scale: tuple[float, float]) -> Box:
    """``box`` found on the working copy, made exact on the image's own alpha.

    Only the box's surroundings are read: the downscaled alpha spreads (Lanczos support,
    rounding) by a few working pixels at most.
    """
    x0, y0, x1, y1 = box
    mx, my = math.ceil(3 * scale[0]) + 2, math.ceil(3 * scale[1]) + 2
    left, top = max(0, x0 - mx), max(0, y0 - my)
    region = (left, top, min(img.size[0], x1 + 1 + mx), min(img.size[1], y1 + 1 + my))
    exact = foreground_bbox(img.crop(region).getchannel("A"), BBOX_MIN_ALPHA)
    if exact is None:  # every pixel was faint: keep what the working copy saw
        return box
    return exact[0] + left, exact[1] + top, exact[2] + left, exact[3] + top


def _work_region(box: Box, scale: tuple[float, float]) -> tuple[float, float, float, float]:
    """The source pixels of inclusive ``box`` as a (fractional) region of the working copy."""
    x0, y0, x1, y1 = box
    return x0 / scale[0], y0 / scale[1], (x1 + 1) / scale[0], (y1 + 1) / scale[1]


def _object(img: "Image", box: Box, factor: int, matte: "Image | None", matte_region) -> "Image":
    """The object's box of ``img`` as RGBA, box-reduced by ``factor`` (1: pixels copied).

    ``matte``: the alpha to use (from the working copy; ``matte_region`` is the box in
    its pixels), or None to keep the image's own alpha (full opacity for RGB).
    """
    from PIL import Image as PILImage

    x0, y0, x1, y1 = box
    source_box = (x0, y0, x1 + 1, y1 + 1)
    if matte is not None:
        # A matted photo has meaningful colour under every pixel, so colour and matte
        # are resampled apart: straight alpha, the photo's own colours at soft edges.
        colour = img.convert("RGB") if img.mode != "RGB" else img
        obj = colour.reduce(factor, box=source_box) if factor > 1 else colour.crop(source_box)
        if factor == 1 and matte.size == img.size:
            alpha = matte.crop(source_box)  # a matte at full size is used as it is
        else:
            alpha = matte.resize(obj.size, PILImage.Resampling.LANCZOS, box=matte_region,
                                 reducing_gap=_REDUCING_GAP)
        obj.putalpha(alpha)
        return obj
    if img.mode == "RGBA":
        # Colour under transparent pixels is arbitrary (often black): reduced
        # premultiplied, so none of it bleeds into the object's edge.
        part = img.crop(source_box)
        return part if factor == 1 else part.convert("RGBa").reduce(factor).convert("RGBA")
    obj = img.reduce(factor, box=source_box) if factor > 1 else img.crop(source_box)
    return obj.convert("RGBA")
