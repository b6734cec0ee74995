"""Image encoder: DINO ViT-B/16 whose LayerNorms are modulated by the camera (AdaLN).

Written from the facts in reference/instantmesh.md §3.1 and §4.2. Module and
parameter names reproduce the released checkpoints' keys below ``encoder.``:
``model.embeddings.*``, ``model.encoder.layer.{j}.*`` (with the Hugging Face ViT
sub-module names), ``model.layernorm.*`` and ``camera_embedder.{0,2}.*``.

Per view: pixels are normalised with the DINO preprocessor statistics, cut into
16x16 patches, a CLS token is prepended and the 224-pixel position embeddings are
resampled to the input's patch grid. Each of the 12 pre-norm layers modulates its
two LayerNorm outputs with shift/scale vectors computed from the camera embedding:
``x * (1 + scale) + shift``. The output keeps every token (CLS included).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from instantmesh_cli.attention import attention
from instantmesh_cli.reconstruction.config import EncoderConfig


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: per-sample shift/scale (B, D) applied to every token of x (B, L, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.projection = nn.Conv2d(3, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(pixels).flatten(2).transpose(1, 2)  # (B, h*w, D), row-major patches


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        grid = cfg.image_size // cfg.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, cfg.hidden_size))
        self.patch_embeddings = PatchEmbeddings(cfg)
        # The resampled embeddings depend only on the weights and the input size, and the
        # bicubic resize costs ~2 ms on an H100 (15% of the encoder at fp16): cache them.
        self._resampled: tuple[tuple, torch.Tensor] | None = None

    def resampled_position_embeddings(self, height: int, width: int) -> torch.Tensor:
        """Position embeddings for an image of ``height`` x ``width`` pixels.

        DINO's recipe, which the checkpoints were trained with: bicubic resampling
        driven by ``scale_factor = (patches + 0.1) / 14``. Passing a scale factor
        (not a target size) makes the kernel use the slightly different source
        step 14 / 20.1 for a 320-pixel input; a ``size=`` resize would give other
        embeddings.
        """
        pos = self.position_embeddings
        n_pos = pos.shape[1] - 1
        h, w = height // self.patch_size, width // self.patch_size
        if h * w == n_pos and height == width:
            return pos
        if torch.is_grad_enabled() and pos.requires_grad:  # training: no cache, gradients must flow
            return self._resample(pos, n_pos, h, w)
        key = (height, width, pos.data_ptr(), pos._version, pos.dtype, pos.device)
        if self._resampled is None or self._resampled[0] != key:
            with torch.autocast(pos.device.type, enabled=False):
                self._resampled = (key, self._resample(pos, n_pos, h, w))
        return self._resampled[1]

    @staticmethod
    def _resample(pos: torch.Tensor, n_pos: int, h: int, w: int) -> torch.Tensor:
        side = int(math.sqrt(n_pos))
        dim = pos.shape[-1]
        grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid,
            scale_factor=((h + 0.1) / math.sqrt(n_pos), (w + 0.1) / math.sqrt(n_pos)),
            mode="bicubic",
            align_corners=False,
        )
        if grid.shape[-2:] != (h, w):  # cannot happen for sizes the model accepts; guards the +0.1 trick
            raise ValueError(f"position embedding resampling gave {tuple(grid.shape[-2:])}, expected {(h, w)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
        return torch.cat([pos[:, :1], grid], dim=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b, _, height, width = pixels.shape
        tokens = self.patch_embeddings(pixels)
        # Under autocast the patch tokens come out in half precision; promoting (as plain
        # PyTorch arithmetic would) keeps the residual stream in the parameters' precision.
        dtype = torch.promote_types(tokens.dtype, self.cls_token.dtype)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1).to(dtype), tokens.to(dtype)], dim=1)
        return tokens + self.resampled_position_embeddings(height, width)


class SelfAttention(nn.Module):
    """Hugging Face ``ViTSelfAttention`` parameters (query/key/value with bias), computed with SDPA."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        d = cfg.hidden_size
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (proj(x).view(b, n, self.num_heads, -1).transpose(1, 2) for proj in (self.query, self.key, self.value))
        out = attention(q, k, v)
        return out.transpose(1, 2).reshape(b, n, d)


class SelfOutput(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)


class Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.output = SelfOutput(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.dense(self.attention(x))


class Intermediate(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)


class Output(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)


class ModulatedLayer(nn.Module):
    """One pre-norm ViT block whose two LayerNorm outputs are shifted/scaled by the camera."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.hidden_size
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg)
        self.layernorm_before = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        # Index 0 is the parameter-free SiLU; the checkpoint keys are adaLN_modulation.1.*
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 4 * d))

    def forward(self, x: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, shift_mlp, scale_mlp = self.adaLN_modulation(camera).chunk(4, dim=1)
        x = x + self.attention(modulate(self.layernorm_before(x), shift_msa, scale_msa))
        h = modulate(self.layernorm_after(x), shift_mlp, scale_mlp)
        # DINO's config says hidden_act "gelu": the exact (erf) GELU.
        return x + self.output.dense(F.gelu(self.intermediate.dense(h)))


class LayerStack(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.layer = nn.ModuleList([ModulatedLayer(cfg) for _ in range(cfg.num_layers)])


class ModulatedViT(nn.Module):
    """The ViT body: ``embeddings``, ``encoder.layer``, final ``layernorm`` (no pooler, no mask token)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = LayerStack(cfg)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixels: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels)
        for layer in self.encoder.layer:
            x = layer(x, camera)
        return self.layernorm(x)


class CameraConditionedEncoder(nn.Module):
    """``encoder`` of the reconstruction model: views + cameras → tokens (B*V, 1 + patches, D)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.model = ModulatedViT(cfg)
        self.camera_embedder = nn.Sequential(nn.Linear(cfg.camera_dim, d), nn.SiLU(), nn.Linear(d, d))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB → the DINO preprocessor's (x - mean) / std (mean = std = 0.5 gives 2x - 1)."""
        mean = torch.tensor(self.cfg.image_mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.image_std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        return ((images.float() - mean) / std).to(images.dtype)

    def forward(self, images: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """images (B, V, 3, H, W) in [0, 1]; cameras (B, V, 16) → (B*V, tokens, D), views of a sample adjacent."""
        b, v = images.shape[:2]
        pixels = self.normalize(images.reshape(b * v, *images.shape[2:]))
        pixels = pixels.to(self.model.embeddings.patch_embeddings.projection.weight.dtype)
        camera = self.camera_embedder(cameras.to(pixels.dtype)).reshape(b * v, -1)
        return self.model(pixels, camera)
