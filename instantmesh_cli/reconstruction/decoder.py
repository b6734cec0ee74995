"""Decoder heads: small MLPs that turn triplane features into geometry and colour.

Written from reference/instantmesh.md §3.3-3.4 and §4.5. Every head is
Linear-ReLU-Linear-ReLU-Linear-ReLU-Linear (hidden 64), so the checkpoint keys are
``net*.0/.2/.4/.6``. Inputs are per-point features (…, 3C) from
:func:`instantmesh_cli.reconstruction.triplane.sample_triplane`.

- Mesh variants (``synthesizer.decoder``): ``net_sdf`` (1), ``net_deformation`` (3),
  ``net_rgb`` (3) on point features; ``net_weight`` (21 FlexiCubes weights, scaled
  by 0.1) on the 8 corner features of a cube concatenated in FlexiCubes corner order.
- NeRF variants: one head ``net`` with 4 outputs: raw density, then 3 colour logits.

Colours use the widened sigmoid ``sigmoid(x) * 1.002 - 0.001``.
"""

from __future__ import annotations

import torch
from torch import nn

RGB_PAD = 0.001
WEIGHT_SCALE = 0.1  # applied to the raw FlexiCubes weight head output


def mlp_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU()]
    layers += [nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden, out_dim))
    head = nn.Sequential(*layers)
    for m in head:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return head


def widened_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """MipNeRF-style sigmoid with range (-0.001, 1.001)."""
    return torch.sigmoid(x) * (1 + 2 * RGB_PAD) - RGB_PAD


class MeshDecoder(nn.Module):
    """SDF, deformation, FlexiCubes weights and colour heads of the mesh variants."""

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        f = 3 * n_features
        self.net_sdf = mlp_head(f, hidden, 1)
        self.net_rgb = mlp_head(f, hidden, 3)
        self.net_deformation = mlp_head(f, hidden, 3)
        self.net_weight = mlp_head(8 * f, hidden, 21)

    def sdf_deformation(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(…, 3C) → raw SDF (…,) (negative inside) and raw deformation (…, 3)."""
        return self.net_sdf(features).squeeze(-1), self.net_deformation(features)

    def cube_weights(self, corner_features: torch.Tensor) -> torch.Tensor:
        """(…, 8 * 3C) corner features in FlexiCubes corner order → (…, 21) weights (beta 12, alpha 8, gamma 1)."""
        return self.net_weight(corner_features) * WEIGHT_SCALE

    def color(self, features: torch.Tensor) -> torch.Tensor:
        """(…, 3C) → RGB (…, 3), nominally in [0, 1] (range (-0.001, 1.001))."""
        return widened_sigmoid(self.net_rgb(features))

    @property
    def color_head(self) -> nn.Module:
        return self.net_rgb


class NeRFDecoder(nn.Module):
    """Density + colour head of the NeRF variants."""

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        self.net = mlp_head(3 * n_features, hidden, 4)

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def density(self, features: torch.Tensor) -> torch.Tensor:
        """Activated density softplus(raw - 1) (…,)."""
        return torch.nn.functional.softplus(self.net(features)[..., 0] - 1.0)

    def color(self, features: torch.Tensor) -> torch.Tensor:
        return widened_sigmoid(self.net(features)[..., 1:])

    @property
    def color_head(self) -> nn.Module:
        return self.net


class Synthesizer(nn.Module):
    """Holds ``decoder`` so that the heads' keys read ``synthesizer.decoder.*`` as in the checkpoints."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
