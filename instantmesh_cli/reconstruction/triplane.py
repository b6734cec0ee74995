"""Sampling features from a triplane.

Planes and their 2-D coordinates (reference/instantmesh.md §4.4): plane 0 is
spanned by (x, y), plane 1 by (x, z), plane 2 by (z, y); the first coordinate
indexes the plane's width (last tensor dim), the second its height. The triplane
covers [-1, 1]^3; outside it features fade to zero (bilinear, zero padding,
``align_corners=False``). Per-point features are the three planes' features
concatenated in plane order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Which point coordinates give (u, v) on each plane.
PLANE_AXES = ((0, 1), (0, 2), (2, 1))


def plane_coordinates(points: torch.Tensor) -> torch.Tensor:
    """(B, M, 3) points → (B, 3, M, 2) per-plane grid coordinates."""
    return torch.stack([points[..., list(axes)] for axes in PLANE_AXES], dim=1)


def sample_triplane(planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Features at ``points``.

    planes: (B, 3, C, H, W); points: (B, M, 3) in the model frame → (B, M, 3C).
    """
    b, n_planes, c, h, w = planes.shape
    m = points.shape[1]
    grid = plane_coordinates(points.to(planes.dtype)).reshape(b * n_planes, 1, m, 2)
    feats = F.grid_sample(
        planes.reshape(b * n_planes, c, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B*3, C, 1, M)
    return feats.reshape(b, n_planes, c, m).permute(0, 3, 1, 2).reshape(b, m, n_planes * c)
