"""Loading the released reconstruction checkpoints.

The released ``instant_{mesh,nerf}_{large,base}.ckpt`` files are Lightning
checkpoints: a dict whose ``state_dict`` holds the training module's tensors,
the reconstruction model's under the prefix ``lrm_generator.``
(reference/instantmesh.md §2.2). We keep exactly those keys, strip the prefix,
drop any ``source_camera`` key (as the official demo does, defensively) and load
strictly: every key and shape must match.

Paths come from the caller (``chain/models.py`` resolves them through the weights
layer, which converts the pickle once into a safetensors file holding
``ckpt["state_dict"]`` under its original key names); nothing here fetches. The model is built on the meta device and the tensors are read straight
onto the target device, so no full-size random initialisation ever happens.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import torch

from instantmesh_cli.errors import WeightsError
from instantmesh_cli.meta_device import on_meta_device
from instantmesh_cli.reconstruction.config import EncoderConfig, LRMConfig
from instantmesh_cli.reconstruction.model import ReconstructionModel

PREFIX = "lrm_generator."
DROPPED_SUBSTRING = "source_camera"


def generator_state_dict(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reconstruction model's tensors from a checkpoint's ``state_dict`` (or the whole checkpoint)."""
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    return {
        key[len(PREFIX) :]: value
        for key, value in raw.items()
        if key.startswith(PREFIX) and DROPPED_SUBSTRING not in key
    }


def build_model(cfg: LRMConfig, device: str | torch.device = "cpu") -> ReconstructionModel:
    """A model with freshly initialised weights (``device="meta"``: shapes only, no memory, no initialisation)."""
    with on_meta_device() if torch.device(device).type == "meta" else torch.device(device):
        return ReconstructionModel(cfg)


_FULL_PRECISION_NAMES = ("cls_token", "position_embeddings", "pos_embed")


def is_matrix_weight(key: str) -> bool:
    """Encoder/transformer tensors that feed matrix products (Linear, convolutions, attention
    projections and their biases): the ones autocast would cast to the compute dtype."""
    if key.startswith("synthesizer."):
        return False
    parts = key.split(".")
    return parts[-1] not in _FULL_PRECISION_NAMES and not any(p.startswith(("norm", "layernorm")) for p in parts)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`WeightsError` unless ``state`` has exactly the model's keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} with other shapes (e.g. {k}: {tuple(state[k].shape)} vs {expected[k]})")
    raise WeightsError(
        f"{source} does not match this model: " + "; ".join(parts),
        hint="is it the checkpoint of the chosen --model?",
    )


def read_generator_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The prefixed-stripped generator tensors of a safetensors file or a pickled Lightning ``.ckpt``."""
    path = Path(path)
    device = torch.device(device)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device=str(device)) as f:
                keys = [k for k in f.keys() if k.startswith(PREFIX) and DROPPED_SUBSTRING not in k]
                return {k[len(PREFIX) :]: f.get_tensor(k) for k in keys}
        raw = torch.load(path, map_location=device, weights_only=True, mmap=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise WeightsError(f"cannot read weights file {path.name}: {exc}", hint="delete it to download again") from None
    if not isinstance(raw, Mapping):
        raise WeightsError(f"{path.name} is not a checkpoint (top level is {type(raw).__name__})")
    return generator_state_dict(raw)


def load_weights(
    cfg: LRMConfig,
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    compute_dtype: torch.dtype = torch.float32,
    weights_dtype: torch.dtype | None = None,
) -> ReconstructionModel:
    """Build ``cfg`` on the meta device and fill it from ``path`` (strict), in eval mode.

    ``compute_dtype`` is the autocast type of :meth:`ReconstructionModel.forward_planes`.
    ``weights_dtype`` (default: the compute dtype) is the storage type of the encoder's
    and transformer's matrix weights; norms, embeddings and the decoder heads stay
    float32. Storing them at the compute precision gives the same results as
    autocast's per-call casts, without the casts (~2 ms per call on an H100) and
    with half the memory.
    """
    device = torch.device(device)
    low = weights_dtype or compute_dtype
    if low != torch.float32 and low != compute_dtype:
        raise ValueError("reduced-precision weights need the same compute dtype")
    state = read_generator_tensors(path, device)
    model = build_model(cfg, "meta")
    check_state_dict(model, state, Path(path).name)
    state = {k: v.to(low if is_matrix_weight(k) else torch.float32) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.compute_dtype = compute_dtype
    return model.eval().requires_grad_(False)


# facebook/dino-vitb16 config.json field -> EncoderConfig field. The checkpoints hold all
# encoder weights; the config only has to agree with the architecture we build.
_DINO_FIELDS = {
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "patch_size": "patch_size",
    "image_size": "image_size",
    "layer_norm_eps": "layer_norm_eps",
}


def encoder_config_from_dino(base: EncoderConfig, config: Mapping, preprocessor: Mapping) -> EncoderConfig:
    """``base`` checked against DINO's ``config.json``, with the image normalisation of its
    ``preprocessor_config.json`` (the official code reads both at run time)."""
    wrong = [
        f"{key} {config[key]!r} (expected {getattr(base, field)!r})"
        for key, field in _DINO_FIELDS.items()
        if key in config and config[key] != getattr(base, field)
    ]
    if config.get("hidden_act", "gelu") != "gelu":
        wrong.append(f"hidden_act {config['hidden_act']!r} (expected 'gelu')")
    if not config.get("qkv_bias", True):
        wrong.append("qkv_bias false (expected true)")
    if config.get("num_channels", 3) != 3:
        wrong.append(f"num_channels {config['num_channels']!r} (expected 3)")
    if wrong:
        raise WeightsError("the DINO config does not describe the encoder of this model: " + ", ".join(wrong))
    if not preprocessor.get("do_normalize", True):
        return replace(base, image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0))
    try:
        mean = tuple(float(x) for x in preprocessor.get("image_mean", base.image_mean))
        std = tuple(float(x) for x in preprocessor.get("image_std", base.image_std))
    except (TypeError, ValueError):
        raise WeightsError("the DINO preprocessor config has unreadable image_mean/image_std") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise WeightsError(f"the DINO preprocessor config has bad image_mean/image_std: {mean} / {std}")
    return replace(base, image_mean=mean, image_std=std)  # type: ignore[arg-type]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {Path(path).name}: {exc}", hint="delete it to fetch it again") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{Path(path).name} is not a JSON object")
    return data


def load_model(
    cfg: LRMConfig,
    checkpoint: str | Path,
    *,
    dino_config: str | Path | None = None,
    dino_preprocessor: str | Path | None = None,
    device: str | torch.device = "cpu",
    compute_dtype: torch.dtype = torch.float32,
    weights_dtype: torch.dtype | None = None,
) -> ReconstructionModel:
    """The model of ``cfg`` from local files: the checkpoint (``.ckpt`` or its safetensors
    conversion) and, when given, DINO's ``config.json`` / ``preprocessor_config.json``
    (the encoder is checked against the first and normalises images as the second says)."""
    if dino_config is not None and dino_preprocessor is not None:
        encoder = encoder_config_from_dino(cfg.encoder, _read_json(Path(dino_config)), _read_json(Path(dino_preprocessor)))
        cfg = replace(cfg, encoder=encoder)
    return load_weights(cfg, checkpoint, device=device, compute_dtype=compute_dtype, weights_dtype=weights_dtype)
