"""Reconstruction weights with known behaviour: seeded random, or designed to reconstruct a known shape.

Used by ``imesh bench --random-weights`` (full-size models whose mesh stage sees a
realistic closed surface instead of the random surface that random heads give) and
by the tests (tiny models whose outputs can be checked exactly).

- :func:`random_state`: seeded random weights for a config.
- :func:`shape_state`: weights designed so that the model reconstructs a known
  shape whatever the input views: the transformer's residual branches are scaled
  by ``branch_scale`` (0: the learned tokens pass through unchanged; small: the
  same amount of compute, the shape only slightly perturbed), the tokens and the
  deconvolution make each plane hold its own pixel coordinates (channels
  3+u, 3-u, 3+v, 3-v), and the heads turn those features into the SDF of an
  axis-aligned octahedron |x|/a + |y|/b + |z|/c = 1 and the colour
  sigmoid(4 * (x, y, z)). Near the triplane border (where features fade to zero)
  the SDF only grows, so no spurious surface appears there.
- :func:`checkpoint_bytes`: a Lightning-style ``.ckpt`` exactly like the released
  ones: ``{"state_dict": {"lrm_generator.<key>": tensor}}``.
"""

from __future__ import annotations

import io
import json
import math

import torch

from instantmesh_cli.meta_device import on_meta_device
from instantmesh_cli.reconstruction.config import LRMConfig
from instantmesh_cli.reconstruction.model import ReconstructionModel

PREFIX = "lrm_generator."
SEMI_AXES = (0.6, 0.4, 0.3)  # octahedron half-extents along model x, y, z
COLOR_GAIN = 4.0


def random_state(cfg: LRMConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with every tensor non-trivial (AdaLN, embeddings and biases included)."""
    gen = torch.Generator().manual_seed(seed)
    with on_meta_device():
        shapes = {k: v.shape for k, v in ReconstructionModel(cfg).state_dict().items()}
    state = {}
    for key, shape in shapes.items():
        if key.endswith("norm1.weight") or key.endswith("norm2.weight") or key.endswith("norm3.weight") or (
            "layernorm" in key and key.endswith(".weight")
        ) or key == "transformer.norm.weight":
            value = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = shape[1] if len(shape) >= 2 else shape[-1]
            if len(shape) == 4:
                fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=gen) / math.sqrt(max(fan_in, 1))
            if "adaLN" in key:
                value = value * 0.3
        state[key] = value.float().contiguous()
    return state


def _scale_transformer_branches(state: dict[str, torch.Tensor], cfg: LRMConfig, scale: float) -> None:
    """Scale the last matrix of every residual branch: 0 passes the learned tokens through unchanged."""
    for i in range(cfg.transformer_layers):
        p = f"transformer.layers.{i}."
        for key in ("cross_attn.out_proj.weight", "self_attn.out_proj.weight", "mlp.3.weight", "mlp.3.bias"):
            state[p + key].mul_(scale)
    state["transformer.norm.weight"].fill_(1.0)
    state["transformer.norm.bias"].zero_()


def _coordinate_planes(state: dict[str, torch.Tensor], cfg: LRMConfig) -> None:
    """Tokens + deconvolution such that every plane pixel holds (3+u, 3-u, 3+v, 3-v) in channels 0..3."""
    d, r = cfg.transformer_dim, cfg.triplane_low_res
    assert d >= 8 and cfg.triplane_dim >= 4
    k = 2 * (r - 1) ** 2 + 1  # W^2 + H^2 + c^2 = k keeps every token's norm equal
    pos = torch.zeros(1, 3 * r * r, d)
    for p in range(3):
        for h in range(r):
            for w in range(r):
                c = math.sqrt(k - w * w - h * h)
                # zero mean and a fixed variance: the final LayerNorm only rescales by s
                pos[0, p * r * r + h * r + w, :8] = torch.tensor([w, -w, h, -h, c, -c, 1.0, -1.0])
    state["transformer.pos_embed"] = pos
    s = 1.0 / math.sqrt((2 * k + 2) / d + 1e-6)
    weight = torch.zeros(d, cfg.triplane_dim, 2, 2)
    bias = torch.zeros(cfg.triplane_dim)
    for i in range(2):  # kernel row → high-res row 2H + i
        for j in range(2):  # kernel column → high-res column 2W + j
            # u = (2 (2W + j) + 1) / (2 r) - 1 = 2W / r + (2j + 1) / (2r) - 1, same for v with (H, i)
            for ch, sign in ((0, 1.0), (1, -1.0)):
                weight[0, ch, i, j] = sign * (2.0 / r) / s
                weight[6, ch, i, j] = sign * ((2 * j + 1) / (2.0 * r)) / s
            for ch, sign in ((2, 1.0), (3, -1.0)):
                weight[2, ch, i, j] = sign * (2.0 / r) / s
                weight[6, ch, i, j] = sign * ((2 * i + 1) / (2.0 * r)) / s
    bias[0] = bias[2] = 3.0 - 1.0
    bias[1] = bias[3] = 3.0 + 1.0
    state["transformer.deconv.weight"] = weight
    state["transformer.deconv.bias"] = bias


def _feature_index(cfg: LRMConfig, plane: int, channel: int) -> int:
    return plane * cfg.triplane_dim + channel


def _set_head(state, prefix: str, cfg: LRMConfig, layer0: list[tuple[dict[int, float], float]], out: list[tuple[dict[int, float], float]]):
    """A head whose first layer makes the given units (weights by feature index, bias), the two middle
    layers pass them through, and the last layer combines them."""
    hidden = cfg.decoder_hidden
    n_in = state[prefix + ".0.weight"].shape[1]
    w0 = torch.zeros(hidden, n_in)
    b0 = torch.zeros(hidden)
    for unit, (weights, b) in enumerate(layer0):
        for idx, value in weights.items():
            w0[unit, idx] = value
        b0[unit] = b
    state[prefix + ".0.weight"], state[prefix + ".0.bias"] = w0, b0
    for layer in (2, 4):
        eye = torch.zeros(hidden, hidden)
        eye[range(len(layer0)), range(len(layer0))] = 1.0
        state[prefix + f".{layer}.weight"], state[prefix + f".{layer}.bias"] = eye, torch.zeros(hidden)
    w6 = torch.zeros(len(out), hidden)
    b6 = torch.zeros(len(out))
    for row, (weights, b) in enumerate(out):
        for unit, value in weights.items():
            w6[row, unit] = value
        b6[row] = b
    state[prefix + ".6.weight"], state[prefix + ".6.bias"] = w6, b6


def _octahedron_units(cfg: LRMConfig) -> list[tuple[dict[int, float], float]]:
    # plane 0 holds (x, y), plane 2 holds (z, y); channels 0/1 = 3 ± u, 2/3 = 3 ± v.
    # relu(3 - (3 + t)) + relu(3 - (3 - t)) = |t|; faded features only make it larger.
    fx, fy, fz = _feature_index(cfg, 0, 0), _feature_index(cfg, 0, 2), _feature_index(cfg, 2, 0)
    return [
        ({fx: -1.0}, 3.0), ({fx + 1: -1.0}, 3.0),
        ({fy: -1.0}, 3.0), ({fy + 1: -1.0}, 3.0),
        ({fz: -1.0}, 3.0), ({fz + 1: -1.0}, 3.0),
    ]


def _octahedron_sum(semi_axes: tuple[float, float, float] = SEMI_AXES) -> dict[int, float]:
    a, b, c = semi_axes
    return {0: 1 / a, 1: 1 / a, 2: 1 / b, 3: 1 / b, 4: 1 / c, 5: 1 / c}


def _color_units(cfg: LRMConfig) -> list[tuple[dict[int, float], float]]:
    return [({_feature_index(cfg, 0, 0): 1.0}, 0.0), ({_feature_index(cfg, 0, 2): 1.0}, 0.0), ({_feature_index(cfg, 2, 0): 1.0}, 0.0)]


def shape_state(
    cfg: LRMConfig,
    seed: int = 0,
    *,
    semi_axes: tuple[float, float, float] = SEMI_AXES,
    branch_scale: float = 0.0,
    random_surface_heads: bool = False,
) -> dict[str, torch.Tensor]:
    """Weights that make any views reconstruct the octahedron with ``semi_axes`` (see module docstring).

    ``random_surface_heads`` keeps the deformation and FlexiCubes-weight heads random
    (bounded effects: the deformation is at most 1/512, the weights move vertices
    within their cube) instead of neutral, so the extraction does its full work.
    """
    state = random_state(cfg, seed)
    _scale_transformer_branches(state, cfg, branch_scale)
    _coordinate_planes(state, cfg)
    g = COLOR_GAIN
    if cfg.kind == "mesh":
        _set_head(state, "synthesizer.decoder.net_sdf", cfg, _octahedron_units(cfg), [(_octahedron_sum(semi_axes), -1.0)])
        _set_head(
            state, "synthesizer.decoder.net_rgb", cfg, _color_units(cfg),
            [({0: g}, -3 * g), ({1: g}, -3 * g), ({2: g}, -3 * g)],
        )
        if not random_surface_heads:
            for head in ("net_deformation", "net_weight"):
                state[f"synthesizer.decoder.{head}.6.weight"].zero_()
                state[f"synthesizer.decoder.{head}.6.bias"].zero_()
    else:
        # raw density 21 - 10 * S: softplus(raw - 1) > 10 exactly where S < 1 (to 5e-6)
        units = _octahedron_units(cfg) + _color_units(cfg)
        density = {u: -10.0 * w for u, w in _octahedron_sum(semi_axes).items()}
        _set_head(
            state, "synthesizer.decoder.net", cfg, units,
            [(density, 21.0), ({6: g}, -3 * g), ({7: g}, -3 * g), ({8: g}, -3 * g)],
        )
    return {k: v.contiguous() for k, v in state.items()}


def octahedron_sdf(points: torch.Tensor, semi_axes: tuple[float, float, float] = SEMI_AXES) -> torch.Tensor:
    a, b, c = semi_axes
    return points[..., 0].abs() / a + points[..., 1].abs() / b + points[..., 2].abs() / c - 1.0


def expected_color(points: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(COLOR_GAIN * points) * 1.002 - 0.001


def checkpoint_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """The released ``.ckpt`` layout: top-level ``state_dict`` with ``lrm_generator.``-prefixed keys."""
    buf = io.BytesIO()
    torch.save({"state_dict": {PREFIX + k: v for k, v in state.items()}}, buf)
    return buf.getvalue()


DINO_PREPROCESSOR = b'{"do_normalize": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": 224}'


def dino_config_bytes(cfg: LRMConfig) -> bytes:
    e = cfg.encoder
    return json.dumps({
        "architectures": ["ViTModel"], "hidden_size": e.hidden_size, "num_hidden_layers": e.num_layers,
        "num_attention_heads": e.num_heads, "intermediate_size": e.intermediate_size, "hidden_act": "gelu",
        "image_size": e.image_size, "patch_size": e.patch_size, "layer_norm_eps": e.layer_norm_eps,
        "qkv_bias": True, "num_channels": 3, "model_type": "vit",
    }).encode()


