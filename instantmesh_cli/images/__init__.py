"""Input images: load and validate, remove the background, recentre the object.

The stage boundary is :class:`PreparedImage`: a square RGBA cut-out whose
foreground fills ``foreground_ratio`` of the side, which is what Zero123++ (with
InstantMesh's white-background UNet) expects as its condition image.

One job per module: :mod:`.loading` (open and validate a file), :mod:`.geometry`
(alpha, object box, square placement), :mod:`.matting` (rembg model files and
session), :mod:`.prepare` (the three together, at a bounded resolution);
for `imesh download` and `imesh doctor`: :mod:`.matting_pins` (the rembg model
files imesh fetches, as rembg pins them), :mod:`.matting_download` (one file over
HTTP, resumable and verified), :mod:`.matting_fetch` (where a model lands).

Only the standard library is imported at module level, here and in every
submodule this package imports: the CLI imports it at start-up (for
:data:`DEFAULT_MATTING_MODEL`); Pillow, numpy and rembg are imported inside the
functions that use them. (:mod:`.matting_download` and :mod:`.matting_fetch`,
imported only by the commands that use them, build on :mod:`instantmesh_cli.hub`.)
"""

from __future__ import annotations

from instantmesh_cli.images.geometry import (
    composite_on,
    foreground_bbox,
    has_real_alpha,
    recentre,
)
from instantmesh_cli.images.loading import (
    DEFAULT_MAX_PIXELS,
    MAX_FILE_BYTES,
    MAX_PIXELS_ENV,
    MIN_SIDE,
    load_image,
    normalize_image,
    pixel_limit,
)
from instantmesh_cli.images.matting import (
    DEFAULT_MATTING_MODEL,
    BackgroundRemover,
    find_matting_model,
    matting_model_path,
    rembg_home,
)
from instantmesh_cli.images.prepare import MAX_CUTOUT_SIDE, WORK_MAX_SIDE, PreparedImage, prepare_image

# Older name, read by `imesh doctor`.
_rembg_home = rembg_home

__all__ = [
    "DEFAULT_MATTING_MODEL",
    "DEFAULT_MAX_PIXELS",
    "MAX_CUTOUT_SIDE",
    "MAX_FILE_BYTES",
    "MAX_PIXELS_ENV",
    "MIN_SIDE",
    "WORK_MAX_SIDE",
    "BackgroundRemover",
    "PreparedImage",
    "composite_on",
    "find_matting_model",
    "foreground_bbox",
    "has_real_alpha",
    "load_image",
    "matting_model_path",
    "normalize_image",
    "pixel_limit",
    "prepare_image",
    "recentre",
    "rembg_home",
]
