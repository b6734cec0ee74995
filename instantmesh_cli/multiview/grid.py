"""The Zero123++ v1.2 output grid: 3 rows x 2 columns of square tiles, read row-major.

Facts (reference/zero123plus.md §5): the grid is 640 wide x 960 tall, tiles are
320x320, and tile ``i`` sits at row ``i // 2``, column ``i % 2``. The camera of
each tile (azimuth relative to the input photo, absolute elevation) is the table
in ``reconstruction/cameras.py``; InstantMesh reads the grid in this same order.

Only PIL here (no torch), so the CLI can name and split tiles cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from PIL import Image

ROWS, COLS = 3, 2
TILE = 320
GRID_WIDTH, GRID_HEIGHT = COLS * TILE, ROWS * TILE  # 640 x 960
NUM_VIEWS = ROWS * COLS

# Azimuth (degrees, relative to the input view) and elevation (degrees, absolute)
# of each tile, row-major. These must equal AZIMUTHS_DEG / ELEVATIONS_DEG in
# reconstruction/cameras.py (a test checks it); they are repeated here so that
# naming tiles does not import torch.
VIEW_AZIMUTHS_DEG: tuple[int, ...] = (30, 90, 150, 210, 270, 330)
VIEW_ELEVATIONS_DEG: tuple[int, ...] = (20, -10, 20, -10, 20, -10)


@dataclass(frozen=True)
class ViewInfo:
    """Where one view sits in the grid and which camera it shows."""

    index: int
    row: int
    col: int
    azimuth_deg: int
    elevation_deg: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1) of the tile in a full-size grid."""
        return (self.col * TILE, self.row * TILE, (self.col + 1) * TILE, (self.row + 1) * TILE)

    @property
    def suffix(self) -> str:
        """File-name suffix such as ``az030_el+20``."""
        return f"az{self.azimuth_deg:03d}_el{self.elevation_deg:+03d}"


VIEWS: tuple[ViewInfo, ...] = tuple(
    ViewInfo(i, i // COLS, i % COLS, VIEW_AZIMUTHS_DEG[i], VIEW_ELEVATIONS_DEG[i]) for i in range(NUM_VIEWS)
)


def split_grid(grid: Image.Image) -> list[Image.Image]:
    """The six views of a 3x2 grid, row-major (view 0 = top left, view 1 = top right, ...).

    Works for any grid whose width is 2 tiles and height 3 tiles of equal size
    (the real output is 640x960, so tiles are 320x320).
    """
    width, height = grid.size
    if width % COLS or height % ROWS or width // COLS != height // ROWS:
        raise ValueError(
            f"a view grid must be {COLS} square tiles wide and {ROWS} high (e.g. {GRID_WIDTH}x{GRID_HEIGHT}), "
            f"got {width}x{height}"
        )
    tile = width // COLS
    return [
        grid.crop((v.col * tile, v.row * tile, (v.col + 1) * tile, (v.row + 1) * tile)) for v in VIEWS
    ]


def join_views(views: Sequence[Image.Image]) -> Image.Image:
    """Inverse of :func:`split_grid`: six equal square tiles (row-major) → one grid image."""
    if len(views) != NUM_VIEWS:
        raise ValueError(f"need {NUM_VIEWS} views to make a grid, got {len(views)}")
    size = views[0].size
    if size[0] != size[1] or any(v.size != size for v in views):
        raise ValueError("all views must be square and of the same size")
    tile = size[0]
    mode = views[0].mode
    grid = Image.new(mode, (COLS * tile, ROWS * tile))
    for info, view in zip(VIEWS, views):
        grid.paste(view.convert(mode), (info.col * tile, info.row * tile))
    return grid


def tile_filename(stem: str, index: int, suffix: str = ".png") -> str:
    """Name of one tile file next to the grid: ``views_az030_el+20.png`` for ``stem='views'``, view 0."""
    return f"{stem}_{VIEWS[index].suffix}{suffix}"
