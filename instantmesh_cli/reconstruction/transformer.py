"""Triplane transformer: learned triplane tokens cross-attend to the image tokens.

Written from reference/instantmesh.md §3.2 and §4.3. The released checkpoints were
trained with ``nn.MultiheadAttention`` (no biases); the attention modules here
hold the same parameters under the same names (``q_proj_weight``/``k_proj_weight``/
``v_proj_weight`` for cross-attention, packed ``in_proj_weight`` for
self-attention, ``out_proj.weight``) and compute with
``scaled_dot_product_attention`` so the fused kernels are used.

Token ``t`` stands for plane ``t // L^2``, row ``(t // L) % L``, column ``t % L``
(L = triplane_low_res). After the blocks and the final LayerNorm, one shared
2x2 stride-2 transposed convolution turns each L x L plane into 2L x 2L.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from instantmesh_cli.attention import attention


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class CrossAttention(nn.Module):
    """Bias-free multi-head attention with key/value width different from the query's."""

    def __init__(self, dim: int, kv_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj_weight = nn.Parameter(torch.empty(dim, dim))
        self.k_proj_weight = nn.Parameter(torch.empty(dim, kv_dim))
        self.v_proj_weight = nn.Parameter(torch.empty(dim, kv_dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            nn.init.xavier_uniform_(w)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = _split_heads(F.linear(x, self.q_proj_weight), self.num_heads)
        k = _split_heads(F.linear(context, self.k_proj_weight), self.num_heads)
        v = _split_heads(F.linear(context, self.v_proj_weight), self.num_heads)
        return self.out_proj(_merge_heads(attention(q, k, v)))


class SelfAttention(nn.Module):
    """Bias-free multi-head self-attention with packed q/k/v projection rows."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.num_heads) for t in F.linear(x, self.in_proj_weight).chunk(3, dim=-1))
        return self.out_proj(_merge_heads(attention(q, k, v)))


class TransformerBlock(nn.Module):
    """Pre-norm block: cross-attention to the image tokens, self-attention, MLP."""

    def __init__(self, dim: int, cond_dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        # The released model's block norms use PyTorch's default eps (1e-5); only the
        # transformer's final norm uses 1e-6.
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attn = CrossAttention(dim, cond_dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.self_attn = SelfAttention(dim, num_heads)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        # Indices 2 and 4 were dropout (p=0) layers; Identity keeps the keys mlp.0 / mlp.3.
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), cond)
        x = x + self.self_attn(self.norm2(x))
        return x + self.mlp(self.norm3(x))


class TriplaneTransformer(nn.Module):
    """Image tokens (B, N, cond_dim) → triplane (B, 3, C, 2L, 2L)."""

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        low_res: int,
        out_channels: int,
        num_layers: int,
        num_heads: int,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.low_res = low_res
        self.pos_embed = nn.Parameter(torch.empty(1, 3 * low_res**2, dim))
        nn.init.normal_(self.pos_embed, std=dim**-0.5)  # on the meta device a no-op (meta_device.py), not a product
        self.layers = nn.ModuleList([TransformerBlock(dim, cond_dim, num_heads) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.deconv = nn.ConvTranspose2d(dim, out_channels, kernel_size=2, stride=2, padding=0)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        b = cond.shape[0]
        r = self.low_res
        x = self.pos_embed.expand(b, -1, -1)
        for layer in self.layers:
            x = layer(x, cond)
        x = self.norm(x)
        # (B, 3*r*r, D) → (B*3, D, r, r): each plane becomes an image for the shared deconvolution.
        x = x.view(b * 3, r, r, -1).permute(0, 3, 1, 2)
        x = self.deconv(x.contiguous())
        return x.view(b, 3, *x.shape[1:])
