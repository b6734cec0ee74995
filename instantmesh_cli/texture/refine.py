"""Per-instance texture refinement (GTR §3.3, reference/gtr-paper.md).

The mesh stays fixed. Its visible surface points at the input cameras are gathered
once; each step samples the triplane at those points, runs the colour head and
takes an Adam step on the L2 loss to the input views' pixels. Both the triplane
(lr 0.15) and the colour head (lr 1e-4) are optimised, as in the paper's best
ablation (Table 3: triplane + colour model).

Kept cheap on purpose: no re-rasterization in the loop, no host synchronisation
until the loop is over (losses stay on the device), a copy of the head so the
loaded model is never modified.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from instantmesh_cli.reconstruction.triplane import sample_triplane
from instantmesh_cli.texture.adam import Adam

LR_PLANES = 0.15
LR_HEAD = 1e-4


class DecoderColor(nn.Module):
    """Adapts any object with a ``color(features) -> rgb`` method (the model's decoder) to a module."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder.color(features)


def as_color_head(head: Any) -> nn.Module:
    """The colour head as a module mapping (..., 3C) features → rgb (activated).

    Accepts such a module; a decoder with a ``color(features)`` method and no forward
    of its own; or an object with such a ``decoder`` (the reconstruction model).
    """
    decoder = getattr(head, "decoder", None)
    if isinstance(decoder, nn.Module) and callable(getattr(decoder, "color", None)):
        return DecoderColor(decoder)
    if isinstance(head, nn.Module):
        if type(head).forward is nn.Module.forward:
            if callable(getattr(head, "color", None)):
                return DecoderColor(head)
            raise TypeError(f"{type(head).__name__} has neither forward() nor color()")
        return head
    raise TypeError(f"colour head must be an nn.Module, got {type(head).__name__}")


def query_colors(planes: torch.Tensor, head: nn.Module, points: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    """RGB (M, 3) at points (M, 3) from planes (1, 3, C, H, W) and a colour head; chunked."""
    outs = [head(sample_triplane(planes, points[None, i : i + chunk]))[0] for i in range(0, points.shape[0], chunk)]
    return torch.cat(outs, dim=0) if outs else points.new_zeros(0, 3)


@dataclass
class RefineResult:
    """Refined triplane and colour head, with the input-view PSNR (dB, foreground pixels) before and after."""

    planes: torch.Tensor
    color_head: nn.Module
    psnr_before: float
    psnr_after: float
    steps: int


def _psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def refine_texture(
    planes: torch.Tensor,
    color_head: nn.Module,
    points: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int = 20,
    lr_planes: float = LR_PLANES,
    lr_head: float = LR_HEAD,
    progress: Callable[[int, int], None] | None = None,
) -> RefineResult:
    """Fit the colour field to ``targets`` (P, 3) at surface ``points`` (P, 3).

    ``planes`` (1, 3, C, H, W) and ``color_head`` are not modified: float32 copies are
    optimised and returned. ``steps=0`` only measures the PSNR. ``progress(done, steps)``
    is called after each step from the Python loop (it does not wait for the device).
    """
    device = planes.device
    planes = planes.detach().float().clone().requires_grad_(steps > 0)
    head = copy.deepcopy(color_head).float().to(device)
    head.train(False)
    for p in head.parameters():
        p.requires_grad_(steps > 0)
    points = points.to(device, torch.float32)[None]
    targets = targets.to(device, torch.float32)
    losses: list[torch.Tensor] = []
    if steps > 0:
        params = [p for p in head.parameters() if p.requires_grad]
        opt = Adam([([planes], lr_planes), (params, lr_head)])  # torch's foreach Adam, without torch.optim (adam.py)
        for step in range(steps):
            rgb = head(sample_triplane(planes, points))[0]
            loss = torch.mean((rgb - targets) ** 2)
            losses.append(loss.detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress is not None:
                progress(step + 1, steps)
    with torch.no_grad():
        final = torch.mean((head(sample_triplane(planes, points))[0] - targets) ** 2)
    values = torch.stack([*losses, final]).cpu().tolist()  # the one host sync
    planes = planes.detach()
    for p in head.parameters():
        p.requires_grad_(False)
    return RefineResult(planes, head, _psnr(values[0]), _psnr(values[-1]), steps)
