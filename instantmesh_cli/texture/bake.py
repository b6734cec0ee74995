"""Baking a colour field into a UV texture, and filling the texels between charts.

The UV triangles are rasterized in UV space (clip = (2u - 1, 2v - 1, 0, 1), as the
official code does, reference/instantmesh.md §4.8) with the same rasterizer backends
as the views; each covered texel's 3-D position is interpolated and the colour field
queried there. Texels no chart covers are then filled so that bilinear filtering and
mip-maps near chart borders read the border colours, not black:

1. ``dilate`` rounds of growing each chart by one texel (mean of the covered 3x3
   neighbours) — exact border colours in the gutters;
2. a push-pull pass (masked mean pyramid down, then up) gives every remaining
   texel a smooth average of the nearby charts.

Rasterizer rows run from v = 0 upwards; the returned texture is flipped so that
row 0 is the top (v = 1), the Mesh convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from instantmesh_cli.texture.raster import Rasterizer

ColorFn = Callable[[torch.Tensor], torch.Tensor]

DILATE_TEXELS = 4


@dataclass
class BakeResult:
    texture: torch.Tensor  # (H, W, 3) uint8, row 0 = top, on the rasterizer's device
    coverage: torch.Tensor  # (H, W) bool, texels whose centre lies in a UV triangle (same orientation)


def uv_clip(uv: torch.Tensor) -> torch.Tensor:
    """(M, 2) UVs in [0, 1] → (1, M, 4) clip coordinates of the UV-space render."""
    return torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=1)[None]


def dilate(color: torch.Tensor, mask: torch.Tensor, rounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grow covered regions by ``rounds`` texels. color (C, H, W), mask (H, W) bool."""
    kernel = torch.ones(1, 1, 3, 3, device=color.device, dtype=color.dtype)
    m = mask.to(color.dtype)[None, None]
    c = (color * m[0])[None]
    for _ in range(rounds):
        weight = F.conv2d(m, kernel, padding=1)
        summed = F.conv2d(c.reshape(-1, 1, *c.shape[-2:]), kernel, padding=1).reshape(c.shape)
        grow = (m == 0) & (weight > 0)
        c = torch.where(grow, summed / weight.clamp(min=1e-12), c)
        m = torch.where(grow, torch.ones_like(m), m)
    return c[0], m[0, 0] > 0


def push_pull(color: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill every uncovered texel with a smooth average of covered ones. color (C, H, W), mask (H, W)."""
    if bool(mask.all()) or not bool(mask.any()):
        return color
    w = mask.to(color.dtype)[None, None]
    c = (color * w[0])[None]
    levels = [(c, w)]
    while min(c.shape[-2:]) > 1:
        c = F.avg_pool2d(c, 2, ceil_mode=True)
        w = F.avg_pool2d(w, 2, ceil_mode=True)
        levels.append((c, w))
    # Coarsest level: premultiplied means (empty cells stay 0 there only if nothing is covered).
    c, w = levels[-1]
    filled = c / w.clamp(min=1e-12)
    for c, w in reversed(levels[:-1]):
        up = F.interpolate(filled, size=c.shape[-2:], mode="bilinear", align_corners=False)
        own = c / w.clamp(min=1e-12)
        filled = torch.where(w > 0, own, up)  # a cell with any covered texel keeps their mean
    return torch.where(mask[None], color, filled[0])


def bake_texture(
    rasterizer: Rasterizer,
    positions: torch.Tensor,
    uv: torch.Tensor,
    faces: torch.Tensor,
    color_fn: ColorFn,
    size: int,
    *,
    dilate_texels: int = DILATE_TEXELS,
) -> BakeResult:
    """Texture (size, size, 3) uint8 of ``color_fn`` over the mesh (positions (M, 3), uv (M, 2), faces (F, 3)).

    ``color_fn`` maps (K, 3) model-frame points to (K, 3) rgb in [0, 1]; it is called once
    on all covered texels (it may chunk internally).
    """
    dev = rasterizer.device
    positions = positions.to(dev, torch.float32)
    uv = uv.to(dev, torch.float32)
    faces = faces.to(dev)
    rast = rasterizer.rasterize(uv_clip(uv), faces, (size, size))
    mask = rast[0, ..., 3] > 0
    points = rasterizer.interpolate(positions, rast, faces)[0]  # (H, W, 3)
    color = torch.zeros(size, size, 3, device=dev)
    with torch.no_grad():
        color[mask] = color_fn(points[mask]).float()
    chw = color.permute(2, 0, 1)
    chw, grown = dilate(chw, mask, dilate_texels)
    chw = push_pull(chw, grown)
    tex = (chw.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0)
    return BakeResult(tex.flip(0).contiguous(), mask.flip(0))
