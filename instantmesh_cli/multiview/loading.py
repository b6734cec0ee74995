"""Loading the Zero123++ v1.2 components one by one from a folder in the released layout.

The folder looks like the ``sudo-ai/zero123plus-v1.2`` snapshot::

    model_index.json                  (+ "ramping_coefficients": 77 floats)
    vae/                              diffusers AutoencoderKL
    text_encoder/                     transformers CLIPTextModel
    tokenizer/                        transformers CLIPTokenizer (vocab.json, merges.txt, ...)
    unet/                             diffusers UNet2DConditionModel (config.json [+ weights])
    scheduler/scheduler_config.json   EulerAncestralDiscreteScheduler
    vision_encoder/                   CLIPVisionModelWithProjection, read by our own tower (clip_vision.py)
                                      to spare each process transformers' 1.5-2.5 s import
    feature_extractor_clip/preprocessor_config.json
    feature_extractor_vae/preprocessor_config.json

No pipeline class or code from the Hub is used: each part is built by its library
class (the vision encoder by ours), and the pipeline glue is ours (``pipeline.py``).
transformers is imported only to load the text encoder and tokenizer, which a caller
with the cached empty-prompt embedding skips (``with_text_encoder=False``).

The InstantMesh white-background UNet (``diffusion_pytorch_model.bin`` of
TencentARC/InstantMesh) is a plain state dict with exactly the v1.2 UNet's keys
(reference/zero123plus.md §7). When it is given, the UNet is built from
``unet/config.json`` on the meta device and the state dict is loaded strictly with
``assign=True``: the v1.2 UNet weights are never read, and no memory is spent on
a first set of weights that would be overwritten.

Nothing here fetches: the caller passes paths (``chain/models.py`` resolves them).
"""

from __future__ import annotations

import contextlib
import json
import sys
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from instantmesh_cli.errors import WeightsError
from instantmesh_cli.meta_device import on_meta_device
from instantmesh_cli.multiview.clip_vision import ClipVisionConfig, ClipVisionTower
from instantmesh_cli.multiview.conditioning import ImageTransform
from instantmesh_cli.multiview.diffusers_import import diffusers_model_classes

# The released UNet config (SD2 architecture; reference/zero123plus.md §1). Kept
# here as a fact: tests build it on the meta device and check the parameter count
# of the released UNet, 865,910,724, and the state-dict shapes; benchmarks build
# full-size random weights from it. Loading always reads the snapshot's own config.
ZERO123PLUS_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],  # diffusers' name for the head count: 64-dim heads
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 96,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}
ZERO123PLUS_UNET_PARAMETERS = 865_910_724

# The component table of the released model_index.json (its ramping_coefficients are
# read from the snapshot); random-weight benchmarks and tests write it with stand-in values.
ZERO123PLUS_COMPONENTS: dict[str, Any] = {
    "feature_extractor_clip": ["transformers", "CLIPImageProcessor"],
    "feature_extractor_vae": ["transformers", "CLIPImageProcessor"],
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "vision_encoder": ["transformers", "CLIPVisionModelWithProjection"],
}

# The released scheduler config (reference/zero123plus.md §1). Loading reads the
# snapshot's own file; random-weight benchmarks and tests write this one.
ZERO123PLUS_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerAncestralDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "linspace",
    "trained_betas": None,
}

# The other released parts, for full-size random-weight benchmarks (parameter
# counts from the v1.2 module dump: VAE 83,653,863; text 340,387,840; vision 632,076,800).
ZERO123PLUS_VAE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}
ZERO123PLUS_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
ZERO123PLUS_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}

COMPONENT_DIRS = (
    "vae",
    "text_encoder",
    "tokenizer",
    "unet",
    "scheduler",
    "vision_encoder",
    "feature_extractor_clip",
    "feature_extractor_vae",
)


@dataclass
class Zero123PlusComponents:
    """Everything the pipeline needs, loaded (on the CPU) and checked."""

    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel; None when the empty-prompt embedding was given
    tokenizer: Any  # transformers CLIPTokenizer; None likewise
    unet: Any  # diffusers UNet2DConditionModel
    vision_encoder: ClipVisionTower
    scheduler_config: dict[str, Any]
    clip_transform: ImageTransform
    vae_transform: ImageTransform
    ramping_coefficients: list[float]
    source: dict[str, str] = field(default_factory=dict)  # where each part came from, for logs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise WeightsError(f"multiview weights incomplete: {path} is missing", hint="run `imesh download`") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} is not a JSON object")
    return data


def read_ramping_coefficients(folder: Path, expected: int | None = None) -> list[float]:
    """The 77 per-token weights of the CLIP image embedding (``model_index.json``)."""
    index = _read_json(folder / "model_index.json")
    ramp = index.get("ramping_coefficients")
    if not isinstance(ramp, list) or not ramp or not all(isinstance(v, (int, float)) for v in ramp):
        raise WeightsError(f"{folder / 'model_index.json'} has no 'ramping_coefficients' list")
    if expected is not None and len(ramp) != expected:
        raise WeightsError(
            f"{folder / 'model_index.json'}: {len(ramp)} ramping coefficients, the text encoder has {expected} positions"
        )
    return [float(v) for v in ramp]


def _state_dict_from_file(path: Path, device: "torch.device | str" = "cpu") -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from instantmesh_cli.weights_format import load_state_dict

        return load_state_dict(path, device=str(device))
    # A pickled .bin: tensors only (never arbitrary objects).
    state = torch.load(str(path), map_location=device, weights_only=True, mmap=True)
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return state


def _read_in_background(path: Path, device: torch.device) -> "Future[dict[str, torch.Tensor]]":
    """Read a weight file onto ``device`` while the main thread imports diffusers and builds the modules."""
    from instantmesh_cli.thread_pools import shared_pool

    return shared_pool("weights", 2).submit(_state_dict_from_file, path, device)


def _load_strictly(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, assign: bool, what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error (``what``: ...) naming what does not match."""
    expected = set(module.state_dict().keys())
    given = set(state.keys())
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise WeightsError(f"{what}: {', '.join(parts)} keys")
    try:
        module.load_state_dict(dict(state), strict=True, assign=assign)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise WeightsError(f"{what}: {first}") from None


def load_unet_state_dict(unet: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, assign: bool) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming what does not match."""
    _load_strictly(unet, state_dict, assign=assign, what="UNet weights do not match the Zero123++ UNet")


# Older transformers saved this (non-persistent since) buffer of 0..positions-1; the tower needs none.
_VISION_POSITION_IDS = "vision_model.embeddings.position_ids"
VISION_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the first the folder has is read


def vision_weights_path(folder: str | Path) -> Path:
    """The vision tower's weight file in ``folder/vision_encoder`` (the first of :data:`VISION_WEIGHT_FILES` there)."""
    sub = Path(folder) / "vision_encoder"
    path = next((sub / name for name in VISION_WEIGHT_FILES if (sub / name).is_file()), None)
    if path is None:
        raise WeightsError(
            f"multiview weights incomplete: {sub} has neither {' nor '.join(VISION_WEIGHT_FILES)}",
            hint="run `imesh download`",
        )
    return path


def load_vision_tower(
    folder: str | Path, dtype: torch.dtype = torch.float32, *, state: Mapping[str, torch.Tensor] | None = None
) -> ClipVisionTower:
    """The CLIP vision tower of ``folder/vision_encoder`` in ``dtype``, its weights loaded strictly
    (``state``: that file's tensors, already read, wherever they lie; the tower is built there)."""
    sub = Path(folder) / "vision_encoder"
    config = ClipVisionConfig.from_dict(_read_json(sub / "config.json"))
    path = vision_weights_path(folder)
    if state is None:
        state = _state_dict_from_file(path)  # safetensors: memory-mapped
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items() if k != _VISION_POSITION_IDS}
    with on_meta_device():
        tower = ClipVisionTower(config)
    _load_strictly(tower, state, assign=True, what=f"vision encoder weights {path} do not match its config.json")
    return tower.eval()


def build_unet_from_config(config: Mapping[str, Any], *, meta: bool = True) -> Any:
    """A UNet with the given config; on the meta device (no memory) unless ``meta=False``."""
    _, UNet2DConditionModel = diffusers_model_classes()

    config = {k: v for k, v in config.items() if not k.startswith("_")}
    if meta:
        with on_meta_device():
            return UNet2DConditionModel.from_config(config)
    return UNet2DConditionModel.from_config(config)


def _load(what: str, folder: Path, loader: Any) -> Any:
    try:
        return loader()
    except WeightsError:
        raise
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot load the multiview {what} from {folder}: {first}", hint="run `imesh download`") from None


def load_components(
    folder: str | Path,
    *,
    unet_weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float16,
    with_text_encoder: bool = True,
    device: "torch.device | str | None" = None,
) -> Zero123PlusComponents:
    """Load every part from ``folder`` (layout above) in ``dtype``, on the CPU (but see ``device``).

    ``unet_weights``: the white-background UNet (a ``.safetensors``/``.bin`` path or a
    state dict) that replaces the v1.2 UNet's weights; ``None`` loads ``unet/``'s own.
    ``with_text_encoder=False`` skips the 340 M-parameter text encoder and its tokenizer:
    the pipeline only ever encodes the empty prompt, so a caller that has that embedding
    (see :func:`text_encoder_files`) need not load them.

    ``device`` (a GPU; the CPU works too): the white UNet's and the vision tower's weights are read straight
    onto it, in background threads that start before diffusers is imported, and those two
    parts are built there. Moving memory-mapped CPU tensors to the GPU afterwards faults
    their pages in one by one: on the H200 that was 2.4 s of a cold start, where
    safetensors' own read of the 1.5 GB reconstruction checkpoint onto the GPU took 0.33 s.
    """
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise WeightsError(f"no Zero123++ model folder at {folder} (model_index.json missing)", hint="run `imesh download`")
    for sub in COMPONENT_DIRS:
        if not (folder / sub).is_dir():
            raise WeightsError(f"multiview weights incomplete: {folder / sub} is missing", hint="run `imesh download`")
    reading: dict[str, Future] = {}
    if device is not None:
        target = torch.device(device)
        if isinstance(unet_weights, (str, Path)) and Path(unet_weights).is_file():
            reading["unet"] = _read_in_background(Path(unet_weights), target)
        reading["vision"] = _read_in_background(vision_weights_path(folder), target)
    with _quiet_loading(transformers=with_text_encoder):
        return _load_components(folder, unet_weights, dtype, with_text_encoder, reading)


def text_encoder_files(folder: str | Path) -> list[Path]:
    """The files the empty-prompt embedding depends on: the text encoder's weights and config, the tokenizer's."""
    folder = Path(folder)
    parts = [p for sub in ("text_encoder", "tokenizer") for p in sorted((folder / sub).glob("*")) if p.is_file()]
    if not parts:
        raise WeightsError(f"multiview weights incomplete: {folder / 'text_encoder'} is empty", hint="run `imesh download`")
    return parts


@contextlib.contextmanager
def _quiet_loading(*, transformers: bool) -> Iterator[None]:
    """No per-file progress bars from diffusers (and transformers, when it loads something): the CLI shows its own."""
    diffusers_model_classes()  # diffusers' first import in the process is the lean one (diffusers_import.py)
    from diffusers.utils import logging as dlog

    loggers = [dlog]
    # Importing transformers only to silence it would cost what clip_vision.py saves.
    if transformers or sys.modules.get("transformers") is not None:
        from transformers.utils import logging as tlog

        loggers.append(tlog)
    enabled = [log for log in loggers if log.is_progress_bar_enabled()]
    for log in loggers:
        log.disable_progress_bar()
    try:
        yield
    finally:
        for log in enabled:
            log.enable_progress_bar()


def _load_components(
    folder: Path,
    unet_weights: str | Path | Mapping[str, torch.Tensor] | None,
    dtype: torch.dtype,
    with_text_encoder: bool,
    reading: "dict[str, Future]",
) -> Zero123PlusComponents:
    AutoencoderKL, UNet2DConditionModel = diffusers_model_classes()

    source = {}
    vae = _load("VAE", folder, lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype))
    if with_text_encoder:
        from transformers import CLIPTextModel, CLIPTokenizer

        text_encoder = _load(
            "text encoder", folder, lambda: CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype)
        )
        tokenizer = _load("tokenizer", folder, lambda: CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"))
        positions = text_encoder.config.max_position_embeddings
    else:
        text_encoder = tokenizer = None
        positions = _read_json(folder / "text_encoder" / "config.json").get("max_position_embeddings")
    vision_encoder = _load("vision encoder", folder, lambda: load_vision_tower(
        folder, dtype, state=reading["vision"].result() if "vision" in reading else None))
    if unet_weights is None:
        unet = _load(
            "UNet", folder, lambda: UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype)
        )
        source["unet"] = str(folder / "unet")
    else:
        config = _load("UNet config", folder, lambda: UNet2DConditionModel.load_config(folder, subfolder="unet"))
        unet = build_unet_from_config(config, meta=True)
        if isinstance(unet_weights, Mapping):
            state = unet_weights
            source["unet"] = "state dict"
        else:
            path = Path(unet_weights)
            if not path.is_file():
                raise WeightsError(f"UNet weights file {path} is missing", hint="run `imesh download`")
            # Read onto the GPU in the background (started before diffusers' import), or memory-mapped.
            state = reading["unet"].result() if "unet" in reading else _state_dict_from_file(path)
            source["unet"] = str(path)
        # Cast tensor by tensor, then assign: the loaded tensors become the parameters.
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        load_unet_state_dict(unet, state, assign=True)
    unet.eval()

    scheduler_config = _read_json(folder / "scheduler" / "scheduler_config.json")
    clip_transform = ImageTransform.from_config(_read_json(folder / "feature_extractor_clip" / "preprocessor_config.json"))
    vae_transform = ImageTransform.from_config(_read_json(folder / "feature_extractor_vae" / "preprocessor_config.json"))
    ramp = read_ramping_coefficients(folder, expected=positions)
    for part in ("vae", "text_encoder", "tokenizer", "vision_encoder", "scheduler"):
        source.setdefault(part, str(folder / part))
    return Zero123PlusComponents(
        vae=vae.eval(),
        text_encoder=None if text_encoder is None else text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet,
        vision_encoder=vision_encoder,
        scheduler_config=scheduler_config,
        clip_transform=clip_transform,
        vae_transform=vae_transform,
        ramping_coefficients=ramp,
        source=source,
    )
