"""Open an input picture and check it is usable: one :class:`InputError` line per failure.

Pillow and numpy are imported inside the functions: the CLI imports this package
at start-up, before it knows whether any image will be read.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Union

from instantmesh_cli.errors import InputError, UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL.Image import Image

# 64 megapixels: above any phone or DSLR photo (a 61 MP full-frame sensor fits) yet it
# keeps the decoded RGB buffer under 200 MB. It is the only pixel limit: Pillow's own
# bomb guard is set to agree with it (see _refuse_over).
DEFAULT_MAX_PIXELS = 64_000_000
MAX_PIXELS_ENV = "IMESH_MAX_PIXELS"

# Bigger files are refused before being read (a 64 MP 16-bit RGBA TIFF is 512 MiB).
MAX_FILE_BYTES = 1 << 30

# Smaller images carry too little of the object to condition Zero123++ (whose VAE
# input is 320²) and are almost always thumbnails or icons given by mistake.
MIN_SIDE = 32

# Formats we open. An allow-list keeps Pillow from trying exotic decoders (EPS would
# run Ghostscript) on whatever file is passed. "JPEG" also opens the multi-picture
# JPEGs (MPO) many cameras write; names this Pillow lacks (AVIF without libavif)
# are dropped at open time.
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "TIFF", "GIF", "AVIF")
_FORMATS_TEXT = "PNG, JPEG, WebP, BMP, TIFF, GIF"

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


def pixel_limit(value: int | None = None) -> int:
    """The pixel limit in force: ``value``, else ``$IMESH_MAX_PIXELS``, else 64 MP."""
    if value is not None:
        return int(value)
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        try:
            parsed = int(float(env))
        except ValueError:
            raise UsageError(f"{MAX_PIXELS_ENV}={env!r} is not a number of pixels") from None
        if parsed < 1:
            raise UsageError(f"{MAX_PIXELS_ENV}={env!r} must be a positive number of pixels")
        return parsed
    return DEFAULT_MAX_PIXELS


def _limit_text(limit: int) -> str:
    return f"{limit / 1e6:g} megapixels" if limit >= 1_000_000 else f"{limit} pixels"


def _over_limit(label: str, limit: int, size: tuple[int, int] | None, pixels: int | None = None) -> InputError:
    if size is not None:
        what = f"{size[0]}×{size[1]} = {size[0] * size[1] / 1e6:.1f} megapixels"
    elif pixels is not None:
        what = f"{pixels / 1e6:.1f} megapixels"
    else:
        what = "too many pixels"
    return InputError(
        f"{label} is {what}, over the limit of {_limit_text(limit)} set by {MAX_PIXELS_ENV} "
        f"(a decompression bomb or a huge scan: downscale it, or raise {MAX_PIXELS_ENV})"
    )


def _bomb_pixels(exc: BaseException) -> int | None:
    # Pillow states the count it refused; the format has been stable since Pillow 5.
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _sniff_unsupported(head: bytes) -> str | None:
    """Name a common image format that Pillow cannot read, from its first bytes."""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIC/HEIF"
    if head.startswith(b"8BPS"):
        return "Photoshop (PSD)"
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return "SVG"
    return None


def _read(source: Source, name: str | None) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return name or "the image data", bytes(source)
    path = Path(source)
    label = name or str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{label} is {path.stat().st_size / 2**30:.1f} GiB, too large for an image input")
        return label, path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label} is a directory, not an image") from None
    except PermissionError:
        raise InputError(f"cannot read {label}: permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot read {label}: {exc.strerror or exc}") from None


def load_image(
    source: Source,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
    min_side: int = MIN_SIDE,
) -> "Image":
    """Open an image file (or its bytes) as an 8-bit RGB or RGBA PIL image.

    Handles PNG, JPEG, WebP, BMP, TIFF, GIF (and AVIF where Pillow has it): EXIF
    orientation is applied, an embedded ICC profile is converted to sRGB, palette /
    grayscale / 16-bit / CMYK / float images become 8-bit RGB(A), animations give
    their first frame. Every unusable input raises :class:`InputError` with one line
    naming it: missing file, directory, empty, not an image, unsupported format,
    truncated or corrupt data, more than ``max_pixels`` pixels (default 64 MP, or
    ``$IMESH_MAX_PIXELS``; checked from the header, before any pixel is decoded),
    a side shorter than ``min_side``.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps

    label, data = _read(source, name)
    if not data:
        raise InputError(f"{label} is empty (0 bytes)")

    limit = pixel_limit(max_pixels)
    # Pillow refuses images above 2 × MAX_IMAGE_PIXELS by its own measure (179 MP out of
    # the box), which would contradict the documented limit both ways: a 100 MP image
    # passes Pillow, and a user who raised IMESH_MAX_PIXELS past 179 MP would still be
    # refused. Setting it to our limit makes Pillow's guard a backstop of ours: between
    # limit and 2 × limit Pillow only warns and the header check below refuses; above,
    # Pillow's error is reported with our limit.
    # Pillow checks its guard when it opens a file, so ours stands only for this open and the
    # process-wide value is put back: other code (and other tests) keep Pillow's own.
    previous, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            PILImage.init()
            formats = [f for f in _FORMATS if f in PILImage.OPEN]
            img = PILImage.open(io.BytesIO(data), formats=formats)
    except PILImage.DecompressionBombError as exc:
        raise _over_limit(label, limit, None, _bomb_pixels(exc)) from None
    except PILImage.UnidentifiedImageError:
        other = _sniff_unsupported(data[:64])
        if other:
            raise InputError(f"{label} is a {other} file; convert it to {_FORMATS_TEXT}") from None
        raise InputError(f"{label} is not an image in a supported format ({_FORMATS_TEXT})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types for bad headers
        raise InputError(f"{label} is not a readable image ({_reason(exc)})") from None
    finally:
        PILImage.MAX_IMAGE_PIXELS = previous

    width, height = img.size
    if width * height > limit:
        raise _over_limit(label, limit, img.size)
    if min(width, height) < min_side:
        raise InputError(f"{label} is only {width}×{height} pixels; at least {min_side} per side is needed")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            # Animations (GIF, APNG, WebP) and multi-page TIFF/MPO open on their first
            # frame, the picture people mean; later frames are never decoded, so a broken
            # one does not matter (and counting frames would scan the whole file).
            img.load()
    except PILImage.DecompressionBombError as exc:  # a GIF frame larger than its header said
        raise _over_limit(label, limit, None, _bomb_pixels(exc)) from None
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces as OSError, SyntaxError, ValueError…
        raise InputError(f"{label} is truncated or corrupt ({_reason(exc)})") from None

    try:
        # Phones store the sensor's orientation and a tag; viewers rotate, so must we.
        # In place: an upright 48 MP photo would otherwise be copied just to drop the tag.
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to refuse the picture
        pass
    try:
        return normalize_image(img)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{label}: cannot convert {img.mode} pixels to RGB ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] if text else type(exc).__name__


def normalize_image(img: "Image") -> "Image":
    """Any Pillow mode → 8-bit ``RGB`` or ``RGBA`` (``RGBA`` only when there is alpha).

    16-bit and 32-bit integer grey is rescaled (Pillow's own ``convert`` clips it to
    255, turning most of a 16-bit picture white); an embedded ICC profile is honoured
    so CMYK and wide-gamut (e.g. Display P3) photos keep their colours.
    """
    import numpy as np
    from PIL import Image as PILImage

    mode = img.mode
    icc = img.info.get("icc_profile")

    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            # Float images have no fixed range; [0, 1] is the common convention.
            arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
            grey = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        else:
            arr = arr.astype(np.int64)
            # Mode "I" is 32-bit, but in practice holds 8- or 16-bit data.
            sixteen = mode != "I" or arr.max(initial=0) > 255
            if sixteen:
                grey = np.rint(np.clip(arr, 0, 65535) / 257.0).astype(np.uint8)
            else:
                grey = np.clip(arr, 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        trns = img.info.get("transparency")
        if isinstance(trns, int) and mode != "F":
            alpha = np.where(np.asarray(img) == trns, 0, 255).astype(np.uint8)
            return PILImage.fromarray(np.dstack([rgb, alpha]), "RGBA")
        return PILImage.fromarray(rgb, "RGB")

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    target = "RGBA" if has_alpha else "RGB"

    if icc and mode in ("RGB", "RGBA", "CMYK", "L", "LA"):
        converted = _icc_to_srgb(img, icc, target)
        if converted is not None:
            return converted
    if mode == target:
        return img
    return img.convert(target)


def _icc_to_srgb(img: "Image", icc: bytes, target: str) -> "Image | None":
    """Convert through the embedded ICC profile to sRGB; None if that cannot be done.

    Palette or tRNS transparency (target RGBA without an alpha band) is left to
    Pillow's ``convert``, which is the only thing that knows how to carry it.
    """
    from PIL import ImageCms

    has_band = img.mode in ("RGBA", "LA")
    if target == "RGBA" and not has_band:
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        base = img.convert({"RGBA": "RGB", "LA": "L"}[img.mode]) if has_band else img
        out = ImageCms.profileToProfile(base, src, dst, outputMode="RGB")
    except Exception:  # noqa: BLE001 - a broken or mismatched profile: fall back to plain conversion
        return None
    if out is None:
        return None
    if has_band:
        out.putalpha(img.getchannel("A"))
    return out
