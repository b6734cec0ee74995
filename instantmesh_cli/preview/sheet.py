"""Still pictures: the preview sheet of one mesh, thumbnails, and a batch's contact sheet."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from instantmesh_cli.errors import ImeshError
from instantmesh_cli.preview.meshfile import PreviewMesh, load_mesh
from instantmesh_cli.preview.render import BACKGROUND, render_orbit

SHEET_AZIMUTHS = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
# A three-quarter view from above-right: front and one side at once (the Zero123++ view 0).
THUMB_AZIMUTH, THUMB_ELEVATION = 30.0, 20.0
STATUSES = ("ok", "suspect", "failed")
STATUS_COLORS = {"ok": (46, 125, 50), "suspect": (230, 140, 0), "failed": (198, 40, 40)}
_BG8 = tuple(int(round(c * 255)) for c in BACKGROUND)
_PAPER = (250, 250, 250)
_INK = (33, 33, 33)


@functools.lru_cache(maxsize=8)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


def _as_mesh(mesh: str | Path | PreviewMesh) -> PreviewMesh:
    return mesh if isinstance(mesh, PreviewMesh) else load_mesh(mesh)


def _fit_photo(photo: Image.Image, side: int) -> Image.Image:
    """The photo scaled into a ``side`` square over the render background, transparency flattened."""
    photo = photo.convert("RGBA")
    scale = side / max(photo.size)
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    photo = photo.resize(size, Image.LANCZOS)
    tile = Image.new("RGB", (side, side), _BG8)
    tile.paste(photo, ((side - size[0]) // 2, (side - size[1]) // 2), photo)
    return tile


def _ellipsize(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def preview_sheet(
    mesh: str | Path | PreviewMesh,
    input_image: Image.Image | str | Path | None = None,
    size: int = 256,
    *,
    elevation: float = 20.0,
    azimuths: Sequence[float] = SHEET_AZIMUTHS,
    device: str | None = "auto",
) -> Image.Image:
    """One row of tiles: the input photo (when given), then the mesh at each azimuth, captioned.

    ``size`` is each tile's side in pixels. All views are rendered in one batch.
    """
    pm = _as_mesh(mesh)
    frames = render_orbit(pm, list(azimuths), elevation, size, device=device)
    tiles = [Image.fromarray(f) for f in frames.images]
    captions = [f"azimuth {a:g}°" for a in azimuths]
    if input_image is not None:
        photo = input_image if isinstance(input_image, Image.Image) else Image.open(input_image)
        tiles.insert(0, _fit_photo(photo, size))
        captions.insert(0, "input")
    font = _font(max(10, size // 16))
    caption_h = int(max(10, size // 16) * 1.8)
    sheet = Image.new("RGB", (size * len(tiles), size + caption_h), _PAPER)
    draw = ImageDraw.Draw(sheet)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        sheet.paste(tile, (i * size, 0))
        text = _ellipsize(draw, caption, font, size - 4)
        tw = draw.textlength(text, font=font)
        draw.text((i * size + (size - tw) / 2, size + caption_h * 0.2), text, fill=_INK, font=font)
    return sheet


def thumbnail(mesh: str | Path | PreviewMesh, size: int = 192, *, device: str | None = "auto") -> Image.Image:
    """A ``size`` square three-quarter view of the mesh (what the contact sheet shows)."""
    frames = render_orbit(_as_mesh(mesh), [THUMB_AZIMUTH], THUMB_ELEVATION, size, device=device)
    return Image.fromarray(frames.images[0])


@dataclass
class ContactEntry:
    """One output on the contact sheet.

    ``status``: ``ok`` | ``suspect`` | ``failed``. ``thumbnail``: a picture already made
    (see :func:`thumbnail`; a batch renders each output once and keeps it); without one,
    ``mesh`` is rendered when the status is not ``failed``. ``detail``: a short second line
    (the error of a failed input, the quality numbers of a suspect one).
    """

    name: str
    status: str = "ok"
    thumbnail: Image.Image | None = None
    mesh: str | Path | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")


def contact_sheet(
    entries: Sequence[ContactEntry],
    path: str | Path | None = None,
    *,
    thumb: int = 192,
    columns: int | None = None,
    device: str | None = "auto",
) -> Image.Image:
    """A grid of thumbnails captioned with each output's name and status; written to ``path`` (PNG) when given.

    The file is replaced atomically, so a batch can call this after every output with the
    entries so far and a reader never sees a half-written sheet.
    """
    from instantmesh_cli.fileio import atomic_path

    n = len(entries)
    cols = columns or max(1, min(n, 6))
    rows = max(1, math.ceil(n / cols))
    font_size = max(10, thumb // 14)
    font = _font(font_size)
    caption_h = int(font_size * 3.0)
    pad = max(4, thumb // 24)
    cell_w, cell_h = thumb + 2 * pad, thumb + caption_h + 2 * pad
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), _PAPER)
    draw = ImageDraw.Draw(sheet)
    for i, entry in enumerate(entries):
        x0, y0 = (i % cols) * cell_w + pad, (i // cols) * cell_h + pad
        tile = entry.thumbnail
        detail = entry.detail
        if tile is None and entry.mesh is not None and entry.status != "failed":
            try:
                tile = thumbnail(entry.mesh, thumb, device=device)
            except ImeshError as exc:  # one unreadable output must not stop the sheet of a batch
                detail = detail or f"no preview: {exc}"
        if tile is None:
            tile = Image.new("RGB", (thumb, thumb), _BG8)
            ImageDraw.Draw(tile).line([(0, 0), (thumb, thumb)], fill=(170, 170, 170), width=2)
            ImageDraw.Draw(tile).line([(0, thumb), (thumb, 0)], fill=(170, 170, 170), width=2)
        elif tile.size != (thumb, thumb):
            tile = _fit_photo(tile, thumb)
        sheet.paste(tile.convert("RGB"), (x0, y0))
        color = STATUS_COLORS[entry.status]
        draw.rectangle([x0 - 2, y0 - 2, x0 + thumb + 1, y0 + thumb + 1], outline=color, width=2)
        status = entry.status if not detail else f"{entry.status}: {detail}"
        draw.text((x0, y0 + thumb + 4), _ellipsize(draw, entry.name, font, thumb), fill=_INK, font=font)
        draw.text((x0, y0 + thumb + 4 + int(font_size * 1.3)), _ellipsize(draw, status, font, thumb), fill=color, font=font)
    if path is not None:
        with atomic_path(path) as tmp:
            sheet.save(tmp, format="PNG")
    return sheet

