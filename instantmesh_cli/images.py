"""Input images: load and validate, remove the background, recentre the object.

The stage boundary is :class:`PreparedImage`: a square RGBA cut-out whose
foreground fills ``foreground_ratio`` of the side, which is what Zero123++ (with
InstantMesh's white-background UNet) expects as its condition image.

Only the standard library is imported at module level: the CLI imports this
module at start-up (for :data:`DEFAULT_MATTING_MODEL`), and rembg alone takes
~1.5 s to import (reference/deps.md). Pillow, numpy and rembg are imported
inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from instantmesh_cli.errors import ImeshError, InputError, UsageError, WeightsError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL.Image import Image

__all__ = [
    "DEFAULT_MATTING_MODEL",
    "DEFAULT_MAX_PIXELS",
    "MIN_SIDE",
    "BackgroundRemover",
    "PreparedImage",
    "composite_on",
    "find_matting_model",
    "foreground_bbox",
    "has_real_alpha",
    "load_image",
    "matting_model_path",
    "normalize_image",
    "prepare_image",
    "recentre",
    "rembg_home",
]

# Default rembg model: u2net.
# - Licence: Apache-2.0 (U^2-Net). bria-rmbg (rembg's own default since 2.0.7x) is
#   CC BY-NC 4.0, unusable commercially, so it must never be picked implicitly.
# - Fidelity: it is the model the official InstantMesh run.py used (``rembg.new_session()``
#   defaulted to u2net then), as did TripoSR, SF3D and TRELLIS; Zero123++ with the
#   white-background UNet was tuned on cut-outs of this quality.
# - Speed: 320² input (isnet-general-use and birefnet-* run at 1024², ~10× the pixels);
#   rembg[cpu] runs on onnxruntime's CPU provider even on the GPU machine, where u2net
#   takes a fraction of a second and birefnet-general several seconds.
# - Size: one 176 MB download (birefnet-general is ~1 GB).
# Users who want finer edges can pick ``--matting isnet-general-use`` (Apache-2.0) or
# ``--matting birefnet-general`` (MIT, best quality, slowest).
DEFAULT_MATTING_MODEL = "u2net"

# 64 megapixels: above any phone or DSLR photo (a 61 MP full-frame sensor fits) yet it
# keeps the decoded RGBA buffer and its padded square under ~1 GB. Pillow's own bomb
# guard (2 × Image.MAX_IMAGE_PIXELS ≈ 179 MP) still refuses anything larger.
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

# An alpha channel is "real" when enough of it is below opaque to describe a shape.
# A few stray non-opaque pixels (some editors write 254s at the border) do not make
# a cut-out; 0.1% of the pixels does not lose any genuine one.
_ALPHA_OPAQUE = 250
_ALPHA_MIN_FRACTION = 0.001
# Foreground present = at least one pixel at least this opaque (out of 255).
_FOREGROUND_MIN_ALPHA = 32
# The object's box counts pixels with alpha above this. InstantMesh uses alpha > 0,
# so one invisible speck (a matting false positive at alpha 1, Lanczos ringing of the
# upsampled matte, JPEG noise) far from the object shrinks the object on the canvas.
# Alpha ≤ 8 blends at most 3% of a colour into the white background: invisible to
# Zero123++, so leaving it out of the box (and cropping it away) loses nothing.
_BBOX_MIN_ALPHA = 8

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


# --------------------------------------------------------------------------- loading


def _max_pixels(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise UsageError(f"{MAX_PIXELS_ENV}={env!r} is not a number of pixels") from None
    return DEFAULT_MAX_PIXELS


def _sniff_unsupported(head: bytes) -> str | None:
    """Name a common image format that Pillow cannot read, from its first bytes."""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIC/HEIF"
    if head.startswith(b"8BPS"):
        return "Photoshop (PSD)"
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return "SVG"
    return None


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
    ``$IMESH_MAX_PIXELS``), a side shorter than ``min_side``.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps

    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "the image data"
        data = bytes(source)
    else:
        path = Path(source)
        label = name or str(path)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise InputError(f"{label} is {path.stat().st_size / 2**30:.1f} GiB, too large for an image input")
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{label} is a directory, not an image") from None
        except PermissionError:
            raise InputError(f"cannot read {label}: permission denied") from None
        except OSError as exc:
            raise InputError(f"cannot read {label}: {exc.strerror or exc}") from None

    if not data:
        raise InputError(f"{label} is empty (0 bytes)")

    limit = _max_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            # We apply our own (lower) limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            PILImage.init()
            formats = [f for f in _FORMATS if f in PILImage.OPEN]
            img = PILImage.open(io.BytesIO(data), formats=formats)
    except PILImage.DecompressionBombError:
        raise InputError(
            f"{label} is too large to open safely (over {2 * PILImage.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)"
        ) from None
    except PILImage.UnidentifiedImageError:
        other = _sniff_unsupported(data[:64])
        if other:
            raise InputError(f"{label} is a {other} file; convert it to {_FORMATS_TEXT}") from None
        raise InputError(f"{label} is not an image in a supported format ({_FORMATS_TEXT})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types for bad headers
        raise InputError(f"{label} is not a readable image ({_reason(exc)})") from None

    width, height = img.size
    if width * height > limit:
        raise InputError(
            f"{label} is {width}×{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{limit / 1e6:.0f} (a decompression bomb or a huge scan; downscale it, or raise {MAX_PIXELS_ENV})"
        )
    if min(width, height) < min_side:
        raise InputError(f"{label} is only {width}×{height} pixels; at least {min_side} per side is needed")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            # Animations (GIF, APNG, WebP) and multi-page TIFF/MPO open on their first
            # frame, the picture people mean; later frames are never decoded, so a broken
            # one does not matter (and counting frames would scan the whole file).
            img.load()
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces as OSError, SyntaxError, ValueError…
        raise InputError(f"{label} is truncated or corrupt ({_reason(exc)})") from None

    try:
        # Phones store the sensor's orientation and a tag; viewers rotate, so must we.
        img = ImageOps.exif_transpose(img)
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


# --------------------------------------------------------------------------- alpha


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
    if alpha.max(initial=0) < _FOREGROUND_MIN_ALPHA:
        return False
    return float((alpha < _ALPHA_OPAQUE).mean()) >= _ALPHA_MIN_FRACTION


def foreground_bbox(alpha, threshold: int = 0) -> tuple[int, int, int, int] | None:
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


def recentre(rgba: "Image", bbox: tuple[int, int, int, int], foreground_ratio: float) -> "Image":
    """Crop ``bbox`` (inclusive), centre it on a transparent square, pad to ``side / ratio``.

    Follows InstantMesh's ``resize_foreground`` (pad, never resample) except for the
    crop: it slices ``[y1:y2, x1:x2]`` with the *inclusive* extremes of ``alpha > 0``,
    losing the object's last row and column and shifting it by half a pixel. We keep
    the whole object: nothing downstream depends on that pixel being gone, the object
    stays exactly centred, and a one-pixel-wide object would otherwise vanish.
    The box (see :func:`prepare_image`) also ignores alpha ≤ 8, where the reference
    counts any alpha > 0.
    """
    import numpy as np
    from PIL import Image as PILImage

    x0, y0, x1, y1 = bbox
    fg = np.asarray(rgba)[y0 : y1 + 1, x0 : x1 + 1]
    h, w = fg.shape[:2]
    side = max(h, w)
    out_side = max(side, int(side / foreground_ratio))
    canvas = np.zeros((out_side, out_side, 4), dtype=np.uint8)
    # One centring step: the reference pads twice, flooring each half, which can leave
    # the object two pixels off centre; this way the margins differ by at most one.
    top = (out_side - h) // 2
    left = (out_side - w) // 2
    canvas[top : top + h, left : left + w] = fg
    return PILImage.fromarray(canvas, "RGBA")


# --------------------------------------------------------------------------- matting


def rembg_home() -> Path:
    """rembg's model root (where it downloads to): ``$U2NET_HOME`` when set."""
    # Mirrors rembg 2.0.86 BaseSession.rembg_home(): U2NET_HOME wins, then REMBG_HOME,
    # then $XDG_DATA_HOME/rembg or ~/.rembg. Replicated so `imesh doctor` can answer
    # without importing rembg (~1.5 s); tests compare it with rembg's own answer.
    if os.getenv("U2NET_HOME"):
        return _legacy_home()
    xdg = os.getenv("XDG_DATA_HOME")
    default = os.path.join(xdg, "rembg") if xdg else os.path.join("~", ".rembg")
    return Path(os.path.expanduser(os.getenv("REMBG_HOME", default)))


_rembg_home = rembg_home  # older name, read by doctor


def _legacy_home() -> Path:
    # rembg BaseSession.legacy_home(): the flat pre-2.0.70 folder, still read.
    return Path(os.path.expanduser(os.getenv("U2NET_HOME", os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net"))))


def find_matting_model(model: str = DEFAULT_MATTING_MODEL) -> Path | None:
    """The rembg model file already on disk for ``model``, or None (no download)."""
    fname = f"{model}.onnx"
    for candidate in (rembg_home() / "models" / model / fname, _legacy_home() / fname):
        if candidate.exists():
            return candidate
    return None


def matting_model_path(model: str = DEFAULT_MATTING_MODEL) -> Path:
    """Where rembg reads ``model`` from: the existing file, else where it would download it.

    rembg looks in ``<home>/models/<name>/<name>.onnx`` then in the legacy flat
    ``$U2NET_HOME/<name>.onnx``; ``<home>`` is ``$U2NET_HOME`` when set.
    """
    return find_matting_model(model) or (rembg_home() / "models" / model / f"{model}.onnx")


def _import_rembg():
    """Import rembg, turning its failure modes into one line.

    Without onnxruntime rembg prints five lines to *stdout* and calls sys.exit(1) at
    import; stdout carries our data (e.g. GLB bytes), so its output is swallowed.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import rembg
            import rembg.sessions
    except (ImportError, SystemExit) as exc:
        detail = f": {exc}" if isinstance(exc, ImportError) else ""
        raise ImeshError(
            f"background removal is unavailable: rembg or onnxruntime is not installed{detail}",
            hint="pip install 'rembg[cpu]', or give an image with transparency and --no-rembg",
        ) from None
    from instantmesh_cli.quiet import quiet_pooch

    quiet_pooch()
    return rembg


def _download_url(session_class) -> str | None:
    """The URL rembg downloads a model from, read from its session class.

    rembg keeps each URL only inside ``download_models``; reading it there keeps the
    hint right for every model and every rembg version instead of a copied table.
    """
    import inspect

    try:
        source = inspect.getsource(session_class.download_models)
    except (OSError, TypeError):
        return None
    found = re.findall(r"https://[^\s\"']+\.onnx", source)
    return found[0] if len(found) == 1 else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class BackgroundRemover:
    """One rembg session, created on first use and reused for every image.

    ``model`` is a rembg session name (``DEFAULT_MATTING_MODEL`` = u2net). A session is
    always passed explicitly: rembg's own default is bria-rmbg (non-commercial licence).
    With ``offline`` (default: ``HF_HUB_OFFLINE`` is set) a missing model fails at once
    instead of trying github.com.
    """

    def __init__(self, model: str = DEFAULT_MATTING_MODEL, *, offline: bool | None = None):
        self.model = model
        self.offline = _offline() if offline is None else offline
        self._session = None

    @property
    def session(self):
        if self._session is None:
            self._session = self._new_session()
        return self._session

    def _missing_hint(self, session_class) -> str:
        target = rembg_home() / "models" / self.model / f"{self.model}.onnx"
        url = _download_url(session_class) if session_class is not None else None
        where = f"put {target.name} in {target.parent} (or set U2NET_HOME to a folder holding it)"
        if url:
            return f"download {url} and {where}"
        return f"run `rembg d {self.model}` (pip install 'rembg[cli]') on a machine with network, or {where}"

    def _new_session(self):
        rembg = _import_rembg()
        from rembg.sessions import sessions as session_classes

        cls = session_classes.get(self.model)
        if cls is None:
            local = sorted(n for n, c in session_classes.items() if _usable_session(c))
            raise UsageError(f"unknown matting model {self.model!r}; choose one of: {', '.join(local)}")
        if not _usable_session(cls):
            raise UsageError(
                f"matting model {self.model!r} cannot be used here "
                "(it sends images to a remote service, needs credentials, or needs its own model_path)"
            )
        existing = find_matting_model(self.model)
        if existing is None and self.offline:
            raise WeightsError(f"rembg model {self.model!r} is not on this machine (offline mode)",
                               hint=self._missing_hint(cls))
        try:
            return rembg.new_session(self.model)
        except ImeshError:
            raise
        except Exception as exc:  # noqa: BLE001 - requests/pooch/onnxruntime errors, reported as one line
            if find_matting_model(self.model) is None:
                raise WeightsError(
                    f"rembg model {self.model!r} is missing and could not be downloaded ({_reason(exc)[:100]})",
                    hint=self._missing_hint(cls),
                ) from None
            path = find_matting_model(self.model)
            raise WeightsError(
                f"rembg model file {path} cannot be loaded ({_reason(exc)[:100]})",
                hint="delete it and run again to download it afresh",
            ) from None

    def mask(self, rgb: "Image") -> "Image":
        """The matte of ``rgb`` as an ``L`` image of the same size (255 = object)."""
        rembg = _import_rembg()
        rgb = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mask = rembg.remove(rgb, session=self.session, only_mask=True)
        if mask.mode != "L":
            mask = mask.convert("L")
        if mask.size != rgb.size:
            mask = mask.resize(rgb.size)
        return mask

    def cutout(self, rgb: "Image") -> "Image":
        """``rgb`` with the matte as its alpha channel.

        The colours are kept as they are (straight alpha). rembg's default cut-out
        pastes the photo onto transparent black, which darkens every soft edge pixel
        and leaves a dark fringe once the cut-out is composited on white for Zero123++.
        """
        mask = self.mask(rgb)
        out = rgb.convert("RGBA")
        out.putalpha(mask)
        return out


def _usable_session(cls) -> bool:
    name = cls.name()
    if name.endswith("_custom"):
        return False  # needs model_path=…, not reachable from a model name
    try:
        return bool(cls.is_local()) and not bool(cls.requires_credentials())
    except Exception:  # noqa: BLE001 - older rembg without these class methods: all local
        return True


# --------------------------------------------------------------------------- prepare


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
    bbox: tuple[int, int, int, int]
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
    name: str = "the image",
) -> PreparedImage:
    """Cut out the object and centre it on a square transparent canvas.

    ``remove_background``: None = automatic (keep a real alpha channel, else run
    rembg), True = always matte the colour channels, False = never (the image's alpha,
    or full opacity, is used as is). ``remover`` reuses a :class:`BackgroundRemover`
    across images; otherwise one is made for ``matting_model``. ``size`` resizes the
    square result to ``size``² (default: keep the source resolution).
    """
    from PIL import Image as PILImage

    if not 0.0 < foreground_ratio <= 1.0:
        raise UsageError(f"foreground ratio must be in (0, 1], got {foreground_ratio}")
    if size is not None and size < 1:
        raise UsageError(f"output size must be positive, got {size}")

    if img.mode not in ("RGB", "RGBA"):
        img = normalize_image(img)
    real_alpha = has_real_alpha(img)
    do_remove = (not real_alpha) if remove_background is None else bool(remove_background)

    if do_remove:
        remover = remover or BackgroundRemover(matting_model)
        rgba = remover.cutout(img.convert("RGB"))
        used_model: str | None = remover.model
    else:
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        used_model = None

    alpha = rgba.getchannel("A")
    if alpha.getextrema()[1] < _FOREGROUND_MIN_ALPHA:
        raise InputError(f"no foreground found in {name}",
                         hint="the cut-out is empty; try another --matting model or an image with alpha")
    bbox = foreground_bbox(alpha, _BBOX_MIN_ALPHA)
    assert bbox is not None  # max alpha ≥ _FOREGROUND_MIN_ALPHA > _BBOX_MIN_ALPHA

    square = recentre(rgba, bbox, foreground_ratio)
    if size is not None and square.size[0] != size:
        # Pillow resamples RGBA with premultiplied alpha: no colour bleeds from transparent pixels.
        square = square.resize((size, size), PILImage.Resampling.LANCZOS)
    return PreparedImage(
        image=square,
        had_alpha=real_alpha,
        background_removed=do_remove,
        matting_model=used_model,
        bbox=bbox,
        source_size=img.size,
        foreground_ratio=foreground_ratio,
    )

