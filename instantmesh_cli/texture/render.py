"""Rendering a mesh at cameras: clip positions, surface samples, coloured images.

Cameras arrive as the (V, 16) vectors the reconstruction model uses (rows 0-2 of
the OpenGL camera-to-world matrix, then normalised fx, fy, cx, cy), or directly as
(V, 4, 4) model-view-projection matrices. The projection is the one of the official
mesh renderer (reference/instantmesh.md §4.10): OpenGL, near 0.1, far 1000, y flipped
so that image row 0 is the top; the field of view comes from fy = 0.5 / tan(fovy / 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from instantmesh_cli.texture.raster import Rasterizer

ColorFn = Callable[[torch.Tensor], torch.Tensor]  # (M, 3) points → (M, 3) rgb


def mvp_from_cameras(cameras: torch.Tensor) -> torch.Tensor:
    """(V, 16) camera vectors or (V, 4, 4) MVP matrices → (V, 4, 4) float32 MVP (world → clip)."""
    from instantmesh_cli.reconstruction.cameras import FAR, NEAR, projection

    cameras = torch.as_tensor(cameras)
    if cameras.ndim == 3 and cameras.shape[1:] == (4, 4):
        return cameras.float()
    if cameras.ndim != 2 or cameras.shape[1] != 16:
        raise ValueError(f"cameras must be (V, 16) camera vectors or (V, 4, 4) matrices, got {tuple(cameras.shape)}")
    cams = cameras.detach().cpu().to(torch.float64)
    c2w = torch.zeros(len(cams), 4, 4, dtype=torch.float64)
    c2w[:, :3, :] = cams[:, :12].reshape(-1, 3, 4)
    c2w[:, 3, 3] = 1.0
    mvps = []
    for i in range(len(cams)):
        fovy = math.degrees(2.0 * math.atan(0.5 / float(cams[i, 13])))
        proj = projection(fovy, NEAR, FAR).to(torch.float64)
        mvps.append(proj @ torch.linalg.inv(c2w[i]))
    return torch.stack(mvps).float()


def clip_positions(vertices: torch.Tensor, mvp: torch.Tensor) -> torch.Tensor:
    """vertices (N, 3), mvp (V, 4, 4) → (V, N, 4) clip coordinates."""
    homo = torch.cat([vertices, torch.ones_like(vertices[:, :1])], dim=1)
    return torch.einsum("vij,nj->vni", mvp.to(vertices), homo)


@dataclass
class SurfaceSamples:
    """What one rasterization of a fixed mesh at V views gives the refinement and the renderer.

    ``pixels`` are flat indices into (V, H, W) of the covered pixels, ``points`` the
    surface points seen there (model frame), ``rast`` the raw rasterizer output.
    """

    rast: torch.Tensor  # (V, H, W, 4)
    mask: torch.Tensor  # (V, H, W) bool
    pixels: torch.Tensor  # (P,) int64
    points: torch.Tensor  # (P, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        v, h, w = self.mask.shape
        return v, h, w


def surface_samples(
    rasterizer: Rasterizer, vertices: torch.Tensor, faces: torch.Tensor, mvp: torch.Tensor, resolution: tuple[int, int]
) -> SurfaceSamples:
    """Rasterize the mesh at every view once and collect the visible surface points."""
    dev = rasterizer.device
    vertices = vertices.to(dev, torch.float32)
    faces = faces.to(dev)
    rast = rasterizer.rasterize(clip_positions(vertices, mvp.to(dev)), faces, resolution)
    points_img = rasterizer.interpolate(vertices, rast, faces)
    mask = rast[..., 3] > 0
    pixels = torch.nonzero(mask.reshape(-1)).squeeze(1)
    points = points_img.reshape(-1, 3)[pixels]
    return SurfaceSamples(rast, mask, pixels, points)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup. texture (H, W, C) row 0 = top; uv (..., 2) origin bottom-left → (..., C)."""
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1).reshape(1, 1, -1, 2)
    img = texture.permute(2, 0, 1)[None].float()
    out = F.grid_sample(img, grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T.reshape(*uv.shape[:-1], texture.shape[-1])


def render(
    rasterizer: Rasterizer,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    mvp: torch.Tensor,
    resolution: tuple[int, int],
    *,
    vertex_colors: torch.Tensor | None = None,
    uv: torch.Tensor | None = None,
    texture: torch.Tensor | None = None,
    color_fn: ColorFn | None = None,
    background: float = 1.0,
    antialias: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (V, H, W, 3) composited over ``background`` and masks (V, H, W).

    Colour from exactly one of: ``vertex_colors`` (N, 3); ``uv`` (N, 2) + ``texture``
    (H, W, 3, floats in [0, 1] or uint8); ``color_fn`` (surface points → rgb).
    ``antialias``: nvdiffrast's analytic antialiasing where available, else 2x
    supersampling on the torch backend.
    """
    if antialias and not hasattr(rasterizer, "antialias"):
        hi = (resolution[0] * 2, resolution[1] * 2)
        img, mask = render(
            rasterizer, vertices, faces, mvp, hi, vertex_colors=vertex_colors, uv=uv, texture=texture,
            color_fn=color_fn, background=background,
        )
        img = F.avg_pool2d(img.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        mask = F.avg_pool2d(mask[:, None].float(), 2)[:, 0] > 0.5
        return img, mask
    dev = rasterizer.device
    vertices = vertices.to(dev, torch.float32)
    faces = faces.to(dev)
    pos = clip_positions(vertices, mvp.to(dev))
    rast = rasterizer.rasterize(pos, faces, resolution)
    mask = rast[..., 3] > 0
    if vertex_colors is not None:
        color = rasterizer.interpolate(vertex_colors.to(dev, torch.float32), rast, faces)
    elif uv is not None and texture is not None:
        tex = texture.to(dev)
        tex = tex.float() / 255.0 if tex.dtype == torch.uint8 else tex.float()
        uv_img = rasterizer.interpolate(uv.to(dev, torch.float32), rast, faces)
        color = sample_texture(tex, uv_img)
    elif color_fn is not None:
        points = rasterizer.interpolate(vertices, rast, faces)
        color = torch.zeros_like(points)
        color[mask] = color_fn(points[mask]).to(color.dtype)
    else:
        raise ValueError("render needs vertex_colors, uv + texture, or color_fn")
    m = mask[..., None].to(color.dtype)
    img = color * m + background * (1 - m)
    if antialias:
        img = rasterizer.antialias(img.contiguous(), rast, pos, faces)
    return img, mask


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (over ``mask`` pixels when given)."""
    diff = (a.float() - b.float()) ** 2
    if mask is not None:
        diff = diff[mask]
    mse = float(diff.mean())
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)
