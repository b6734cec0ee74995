"""Architecture hyper-parameters of the InstantMesh reconstruction models.

Values of the released variants come from the official ``configs/*.yaml`` and the
``facebook/dino-vitb16`` config (see ``reference/instantmesh.md`` §1, §3.1). Tests
build the same architecture with tiny sizes through :func:`tiny_config`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Mapping


@dataclass(frozen=True)
class EncoderConfig:
    """DINO ViT-B/16 with camera-modulated (AdaLN) LayerNorms."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16
    image_size: int = 224  # the size the position embeddings were trained at
    layer_norm_eps: float = 1e-12
    camera_dim: int = 16
    # DINO's preprocessor normalises with mean = std = 0.5, i.e. pixel = 2x - 1.
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class LRMConfig:
    """One reconstruction model: encoder + triplane transformer + decoder heads + surface extractor."""

    kind: Literal["mesh", "nerf"] = "mesh"
    encoder: EncoderConfig = EncoderConfig()
    transformer_dim: int = 1024
    transformer_layers: int = 16
    transformer_heads: int = 16
    triplane_low_res: int = 32
    triplane_high_res: int = 64
    triplane_dim: int = 80
    decoder_hidden: int = 64
    rendering_samples_per_ray: int = 128
    # FlexiCubes (mesh variants)
    grid_res: int = 128
    grid_scale: float = 2.1
    # Marching cubes on the density field (NeRF variants)
    mesh_resolution: int = 256
    mesh_threshold: float = 10.0
    input_size: int = 320  # pixels per view fed to the encoder


INSTANT_MESH_LARGE = LRMConfig(kind="mesh", transformer_layers=16, triplane_dim=80, rendering_samples_per_ray=128)
INSTANT_MESH_BASE = LRMConfig(kind="mesh", transformer_layers=12, triplane_dim=40, rendering_samples_per_ray=96)
INSTANT_NERF_LARGE = LRMConfig(kind="nerf", transformer_layers=16, triplane_dim=80, rendering_samples_per_ray=128)
INSTANT_NERF_BASE = LRMConfig(kind="nerf", transformer_layers=12, triplane_dim=40, rendering_samples_per_ray=96)

# The released variants by their ``--model`` names (settings.VARIANTS names their files).
VARIANT_CONFIGS: dict[str, LRMConfig] = {
    "instant-mesh-large": INSTANT_MESH_LARGE,
    "instant-mesh-base": INSTANT_MESH_BASE,
    "instant-nerf-large": INSTANT_NERF_LARGE,
    "instant-nerf-base": INSTANT_NERF_BASE,
}


def variant_config(name: str) -> LRMConfig:
    try:
        return VARIANT_CONFIGS[name]
    except KeyError:
        raise ValueError(f"no architecture registered for model {name!r}") from None


def tiny_config(base: LRMConfig) -> LRMConfig:
    """Same structure and key names as ``base`` with sizes small enough for CPU tests."""
    return replace(
        base,
        encoder=replace(base.encoder, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
        # Differs from the encoder width, as in the released models (1024 vs 768): the
        # cross-attention keeps separate q/k/v projections, like nn.MultiheadAttention with kdim != dim.
        transformer_dim=48,
        transformer_layers=2,
        transformer_heads=2,
        triplane_low_res=8,
        triplane_high_res=16,
        triplane_dim=4 if base.triplane_dim == 40 else 8,
        decoder_hidden=16,
        grid_res=32,
        mesh_resolution=32,
        input_size=64,
    )


def config_to_dict(cfg: LRMConfig) -> dict[str, Any]:
    """``cfg`` as plain JSON values (the form :func:`config_from_dict` reads)."""
    data = asdict(cfg)
    data["encoder"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["encoder"].items()}
    return data


def _typed(cls, name: str, value: Any, where: str) -> Any:
    default = getattr(cls(), name)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ValueError(f"{where}{name} must be a list of {len(default)} numbers")
        return tuple(float(v) for v in value)
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return value
    # JSON has one number type: an int field must get a whole number, a float field any number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}{name} must be a number, got {value!r}")
    if isinstance(default, int):
        if float(value) != int(value):
            raise ValueError(f"{where}{name} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _refuse_unknown(cls, data: Mapping[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown field {where}{unknown[0]!r} (known: {', '.join(sorted(known))})")


def config_from_dict(data: Mapping[str, Any], base: LRMConfig) -> LRMConfig:
    """``base`` with the fields ``data`` names replaced (``encoder`` likewise, field by field).

    Unknown names are refused rather than ignored: a typo would otherwise load the
    checkpoint with the wrong architecture and fail later with a shape error.
    """
    if not isinstance(data, Mapping):
        raise ValueError("the reconstruction config must be a JSON object")
    _refuse_unknown(LRMConfig, data, "")
    changes = {k: _typed(LRMConfig, k, v, "") for k, v in data.items() if k != "encoder"}
    if changes.get("kind", base.kind) not in ("mesh", "nerf"):
        raise ValueError(f"kind must be 'mesh' or 'nerf', got {changes['kind']!r}")
    encoder = data.get("encoder", {})
    if not isinstance(encoder, Mapping):
        raise ValueError("encoder must be a JSON object")
    _refuse_unknown(EncoderConfig, encoder, "encoder.")
    enc = replace(base.encoder, **{k: _typed(EncoderConfig, k, v, "encoder.") for k, v in encoder.items()})
    return replace(base, encoder=enc, **changes)
