"""The CLIP vision tower with its projection (Zero123++'s ``vision_encoder/``), in plain torch.

It computes what transformers' ``CLIPVisionModelWithProjection`` returns as
``image_embeds`` and has the same parameter names, so the released checkpoint loads
into it strictly. It exists so that a run whose empty-prompt embedding is cached
never imports transformers (1.5-2.5 s per process; reference/zero123plus.md §3 for
how the embedding is used).

The architecture (a pre-LayerNorm ViT):

- embeddings: a class token, then one token per patch (a convolution without bias,
  kernel = stride = patch size), plus a learned embedding per position;
- ``pre_layrnorm`` (sic: the checkpoint's name), then ``num_hidden_layers`` encoder
  layers, each ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``;
- ``post_layernorm`` of the class token, then ``visual_projection`` (no bias).

No I/O here: ``multiview/loading.py`` reads the config and the weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from instantmesh_cli.attention import attention


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    # OpenAI CLIP's sigmoid approximation of GELU
    return x * torch.sigmoid(1.702 * x)


# The config's ``hidden_act`` names, as transformers' ACT2FN computes them.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "quick_gelu": _quick_gelu,
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
}


@dataclass(frozen=True)
class ClipVisionConfig:
    """The fields of transformers' ``CLIPVisionConfig`` the tower uses, with its defaults."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    projection_dim: int = 512
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for f in fields(self):  # f.type is the annotation's text (postponed annotations)
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"CLIP vision config: {f.name} must be a positive integer, not {value!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ValueError(f"CLIP vision config: layer_norm_eps must be positive, not {self.layer_norm_eps!r}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"CLIP vision config: hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"CLIP vision config: hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.patch_size > self.image_size:
            raise ValueError(f"CLIP vision config: patch_size {self.patch_size} exceeds image_size {self.image_size}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClipVisionConfig":
        """From a ``config.json``: other keys are ignored, missing ones take the defaults."""
        # A whole CLIPConfig keeps the vision tower's fields under "vision_config".
        if data.get("model_type") == "clip" and isinstance(data.get("vision_config"), Mapping):
            data = data["vision_config"]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def num_positions(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1  # the patches and the class token


class _Embeddings(nn.Module):
    def __init__(self, config: ClipVisionConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        self.position_embedding = nn.Embedding(config.num_positions, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        if height != self.image_size or width != self.image_size:
            # one learned embedding per position: no other size has them
            size = self.image_size
            raise ValueError(f"CLIP vision tower: input is {height}x{width}, the model takes {size}x{size}")
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        tokens = torch.cat([self.class_embedding.expand(batch, 1, -1), patches.flatten(2).transpose(1, 2)], dim=1)
        return tokens + self.position_embedding.weight


class _SelfAttention(nn.Module):
    def __init__(self, config: ClipVisionConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.scale = (width // self.heads) ** -0.5
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, T, W) -> (B, heads, T, W / heads)
            return t.view(batch, tokens, self.heads, -1).transpose(1, 2)

        out = attention(
            heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)), scale=self.scale
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, width))


class _MLP(nn.Module):
    def __init__(self, config: ClipVisionConfig) -> None:
        super().__init__()
        self.activation = ACTIVATIONS[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class _EncoderLayer(nn.Module):
    def __init__(self, config: ClipVisionConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = _SelfAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = _MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class _Encoder(nn.Module):
    def __init__(self, config: ClipVisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _VisionTransformer(nn.Module):
    """Pixels -> the LayerNorm'd class token (transformers' ``pooler_output``)."""

    def __init__(self, config: ClipVisionConfig) -> None:
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = _Encoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)))
        return self.post_layernorm(tokens[:, 0])


class ClipVisionTower(nn.Module):
    """Pixel values (B, C, image_size, image_size) -> image embeddings (B, projection_dim)."""

    def __init__(self, config: ClipVisionConfig) -> None:
        super().__init__()
        self.config = config
        # Attribute names = the checkpoint's key prefixes.
        self.vision_model = _VisionTransformer(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values))
