"""A quality signal for an exported mesh: how well it reproduces the six views it was made from.

The exported file is rendered at the six Zero123++ cameras, unlit (its plain colours, as
the views show them), over white, and compared with the views:

- ``iou``: silhouette intersection-over-union per view (mesh coverage ≥ 0.5 against view
  pixels that are not near-white), averaged over the views;
- ``psnr``: PSNR in dB over the union of both foregrounds, all views pooled.

The cameras live in the model frame (z up, azimuth 0 on +x, radius ``4 * camera_scale``),
the file in the exported frame, which export.py reached by an axis permutation and
``(· - center) * scale`` (:class:`~instantmesh_cli.export.ExportTransform`). That transform
is not recoverable from the file alone (it was normalised away), so the caller passes it:
``export_transform(mesh, size)`` of the model-frame mesh that was exported. The file's
points are mapped back into the model frame by the inverse transform folded into each
camera matrix, so nothing else about the file changes.

Limits: a white object's own pixels count as background in the views (but not in the
render), so its IoU reads low; thresholds for ``suspect`` are starting points.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from instantmesh_cli.errors import InputError
from instantmesh_cli.export import ExportTransform
from instantmesh_cli.preview.meshfile import PreviewMesh, load_mesh
from instantmesh_cli.preview.render import render_frames

# View pixels whose every channel is at least this are the white background.
NEAR_WHITE = 235
# Below either, an output is flagged "suspect" (the contact sheet and the JSON say so).
SUSPECT_IOU = 0.7
SUSPECT_PSNR = 15.0


@dataclass(frozen=True)
class Quality:
    psnr: float
    iou: float
    view_psnr: tuple[float, ...]
    view_iou: tuple[float, ...]

    @property
    def suspect(self) -> bool:
        return self.iou < SUSPECT_IOU or self.psnr < SUSPECT_PSNR

    def as_dict(self) -> dict[str, object]:
        """Rounded numbers for JSON output (inf PSNR, a perfect match, becomes None)."""
        def num(x: float, digits: int):
            return None if not math.isfinite(x) else round(float(x), digits)

        d = asdict(self)
        return {
            "psnr": num(d["psnr"], 2), "iou": num(d["iou"], 4),
            "view_psnr": [num(x, 2) for x in d["view_psnr"]], "view_iou": [num(x, 4) for x in d["view_iou"]],
            "suspect": self.suspect,
        }


def exported_to_model(transform: ExportTransform) -> np.ndarray:
    """(4, 4) matrix taking exported (glTF-frame) points to the model frame.

    Read off ``transform.invert`` itself (its images of the origin and the unit axes), so it
    follows export.py's axis mapping by construction.
    """
    origin = np.asarray(transform.invert(np.zeros((1, 3))), np.float64)[0]
    axes = np.asarray(transform.invert(np.eye(3)), np.float64) - origin
    m = np.eye(4)
    m[:3, :3] = axes.T
    m[:3, 3] = origin
    return m


def exported_frame_mvp(transform: ExportTransform, camera_scale: float = 1.0) -> torch.Tensor:
    """(V, 4, 4) clip matrices of the Zero123++ cameras acting on exported-frame points."""
    from instantmesh_cli.reconstruction.cameras import DEFAULT_RADIUS, mvp_matrices

    mvp = mvp_matrices(6, radius=DEFAULT_RADIUS * camera_scale).double().numpy()
    return torch.from_numpy(mvp @ exported_to_model(transform)).float()


def view_images(views: Image.Image | Sequence[Image.Image]) -> np.ndarray:
    """The six views as uint8 (6, S, S, 3) over white: a 3×2 grid image or six tiles."""
    from instantmesh_cli.multiview.grid import NUM_VIEWS, split_grid

    if isinstance(views, Image.Image):
        try:
            tiles = split_grid(views)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    else:
        tiles = list(views)
    if len(tiles) != NUM_VIEWS:
        raise InputError(f"need {NUM_VIEWS} views, got {len(tiles)}")
    size = tiles[0].size
    if size[0] != size[1] or any(t.size != size for t in tiles):
        raise InputError("the views must be equal squares")
    out = []
    for t in tiles:
        rgba = t.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out.append(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))
    return np.stack(out)


def view_foreground(views: np.ndarray) -> np.ndarray:
    """(V, H, W) bool: view pixels that are not near-white."""
    # Channel by channel: numpy's min over a last axis of 3 took 14 ms for six 320² views, this 0.5.
    return np.minimum(np.minimum(views[..., 0], views[..., 1]), views[..., 2]) < NEAR_WHITE


def mesh_quality(
    mesh: str | Path | PreviewMesh,
    views: Image.Image | Sequence[Image.Image],
    transform: ExportTransform,
    *,
    camera_scale: float = 1.0,
    device: str | None = "auto",
    rasterizer=None,
) -> Quality:
    """Compare an exported mesh (a file, or :func:`load_mesh` ``(..., normalize=False)``) with its six views.

    ``transform``: the export transform of the model-frame mesh, ``export_transform(mesh, size)``.
    ``camera_scale``: the ``--scale`` the mesh was reconstructed with (camera radius 4 × scale).
    """
    pm = load_mesh(mesh, normalize=False) if not isinstance(mesh, PreviewMesh) else mesh
    if isinstance(mesh, PreviewMesh) and (mesh.scale != 1.0 or np.any(mesh.center != 0)):
        raise ValueError("mesh_quality needs the file's own coordinates: load_mesh(path, normalize=False)")
    target = view_images(views)
    size = target.shape[1]
    frames = render_frames(
        pm, exported_frame_mvp(transform, camera_scale), size, device=device, rasterizer=rasterizer,
        shaded=False, background=1.0, supersample=2,
    )
    return compare(frames.images, frames.mask(), target)


def compare(rendered: np.ndarray, rendered_mask: np.ndarray, views: np.ndarray) -> Quality:
    """:class:`Quality` of uint8 renders (V, H, W, 3) with their masks against uint8 views over white.

    Over the union of both silhouettes, per view and overall. The squared errors are summed as
    integers (exact, at most 3 x 255² a pixel; divided by 255² once), all views at once.
    """
    fg = view_foreground(views)
    union = rendered_mask | fg
    pixels = union.sum(axis=(1, 2), dtype=np.int64)
    shared = (rendered_mask & fg).sum(axis=(1, 2), dtype=np.int64)
    diff = rendered.astype(np.int32) - views.astype(np.int32)
    squares = np.einsum("vhwc,vhwc->vhw", diff, diff)
    sq = np.where(union, squares, 0).sum(axis=(1, 2), dtype=np.int64) / 255.0**2
    view_iou = [float(i) / n if n else 1.0 for i, n in zip(shared, pixels)]
    view_psnr = [_psnr(float(e) / (n * 3)) if n else float("inf") for e, n in zip(sq, pixels)]
    count = int(pixels.sum()) * 3
    psnr = _psnr(float(sq.sum()) / count) if count else float("inf")
    return Quality(psnr, float(np.mean(view_iou)), tuple(view_psnr), tuple(view_iou))


def _psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)
