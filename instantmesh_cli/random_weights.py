"""Full-size random weights in the released file layouts, for ``imesh bench --random-weights``.

The folder this writes has the layout of ``imesh download --to DIR`` (``DIR/<repo>/<file>``),
so the benchmark loads it through exactly the code path real weights take: the
hub layer, the pickle → safetensors conversion, the strict loaders.

What is random and what is not:

- Zero123++ parts (UNet, VAE, CLIP text and vision encoders) are built from the
  released configs (``multiview/loading.py``) with PyTorch's default initialisation;
  the scheduler and feature-extractor configs are the released values; the
  tokenizer holds only CLIP's special tokens (the pipeline only ever encodes "").
- The reconstruction checkpoint is :func:`~instantmesh_cli.reconstruction.synthetic.shape_state`
  at full size: random encoder and transformer weights (the transformer's residual
  branches scaled down, the same amount of compute), and SDF / colour heads designed
  so that the mesh stage sees a closed surface of realistic size (a slightly
  perturbed octahedron) rather than the millions of random faces random heads give.
  The deformation and FlexiCubes-weight heads stay random.
"""

from __future__ import annotations

import json
from pathlib import Path

from instantmesh_cli import settings

# Not a Hub commit: random weights belong to no revision. The benchmark points the
# registry at this value so that no size or hash of the real files applies.
RANDOM_REVISION = "0" * 40
BENCH_SEMI_AXES = (0.8, 0.7, 0.75)  # model x, y, z: fills the box like a typical object
MARKER = "imesh-random-weights.json"

_CLIP_PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 224},
}
_VAE_PREPROCESSOR = {
    **_CLIP_PREPROCESSOR,
    "crop_size": {"height": 512, "width": 512},
    "image_mean": 0.5,
    "image_std": 0.8,
    "resample": 2,
    "size": {"shortest_edge": 512},
}
_SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": "<|endoftext|>"}
_VOCAB = {"!": 0, "<|startoftext|>": 49406, "<|endoftext|>": 49407}


def stand_in_ramp() -> list[float]:
    """77 ramping coefficients shaped like the released ones (small at the start, ~1.2 at the end)."""
    return [round(0.003 + 1.195 * (i / 76) ** 1.5, 6) for i in range(77)]


def env_overrides() -> dict[str, str]:
    """Environment that points the registry at the random files (for this process and children)."""
    return {
        settings.revision_env_var(repo): RANDOM_REVISION
        for repo in (settings.ZERO123PLUS_REPO, settings.INSTANTMESH_REPO, settings.DINO_REPO)
    }


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def is_complete(folder: Path, variant: str) -> bool:
    try:
        return variant in json.loads((folder / MARKER).read_text()).get("variants", [])
    except (OSError, ValueError):
        return False


def write_random_weights(folder: str | Path, variant: str = settings.DEFAULT_VARIANT, *, device: str = "cpu", seed: int = 0) -> Path:
    """Write (once) every file ``variant`` needs, random, under ``folder``; returns ``folder``."""
    import torch

    folder = Path(folder)
    if is_complete(folder, variant):
        return folder
    torch.manual_seed(seed)
    _write_zero123plus(folder / settings.ZERO123PLUS_REPO, folder / settings.INSTANTMESH_REPO, device)
    _write_reconstruction(folder, variant, seed)
    marker = folder / MARKER
    try:
        done = json.loads(marker.read_text()).get("variants", [])
    except (OSError, ValueError):
        done = []
    _json(marker, {"variants": sorted(set(done) | {variant}), "note": "random weights for imesh bench; not a model"})
    return folder


def _write_zero123plus(repo: Path, instantmesh: Path, device: str) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from instantmesh_cli.multiview.loading import (
        ZERO123PLUS_COMPONENTS,
        ZERO123PLUS_SCHEDULER_CONFIG,
        ZERO123PLUS_TEXT_CONFIG,
        ZERO123PLUS_UNET_CONFIG,
        ZERO123PLUS_VAE_CONFIG,
        ZERO123PLUS_VISION_CONFIG,
    )

    if (repo / "vision_encoder" / "model.safetensors").exists() and (instantmesh / settings.WHITE_UNET_FILE).exists():
        return
    _json(repo / "model_index.json", {
        "_class_name": "Zero123PlusPipeline", **ZERO123PLUS_COMPONENTS, "ramping_coefficients": stand_in_ramp(),
    })
    _json(repo / "scheduler" / "scheduler_config.json", ZERO123PLUS_SCHEDULER_CONFIG)
    _json(repo / "feature_extractor_clip" / "preprocessor_config.json", _CLIP_PREPROCESSOR)
    _json(repo / "feature_extractor_vae" / "preprocessor_config.json", _VAE_PREPROCESSOR)
    tok = repo / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps(_VOCAB), encoding="utf-8")
    (tok / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    _json(tok / "special_tokens_map.json", _SPECIAL)
    _json(tok / "tokenizer_config.json", {**_SPECIAL, "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"})

    half = torch.float16
    with torch.device(device):
        text = CLIPTextModel(CLIPTextConfig(**ZERO123PLUS_TEXT_CONFIG, bos_token_id=49406, eos_token_id=49407, pad_token_id=0))
    text.to(half).save_pretrained(repo / "text_encoder")
    del text
    with torch.device(device):
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**ZERO123PLUS_VISION_CONFIG))
    vision.to(half).save_pretrained(repo / "vision_encoder")
    del vision
    with torch.device(device):
        vae = AutoencoderKL(**{k: v for k, v in ZERO123PLUS_VAE_CONFIG.items()})
    vae.to(half).save_pretrained(repo / "vae")
    del vae
    _json(repo / "unet" / "config.json", {"_class_name": "UNet2DConditionModel", **ZERO123PLUS_UNET_CONFIG})
    with torch.device(device):
        unet = UNet2DConditionModel(**ZERO123PLUS_UNET_CONFIG)
    # The white-background UNet is released as a pickled fp16 state dict.
    instantmesh.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.to(half).cpu() for k, v in unet.state_dict().items()}, instantmesh / settings.WHITE_UNET_FILE)


def _write_reconstruction(folder: Path, variant_name: str, seed: int) -> None:
    from instantmesh_cli.reconstruction.synthetic import DINO_PREPROCESSOR, checkpoint_bytes, dino_config_bytes, shape_state
    from instantmesh_cli.reconstruction.config import variant_config

    variant = settings.get_variant(variant_name)
    target = folder / settings.INSTANTMESH_REPO / variant.checkpoint
    if not target.exists():
        state = shape_state(variant_config(variant.name), seed, semi_axes=BENCH_SEMI_AXES, branch_scale=0.05, random_surface_heads=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(checkpoint_bytes(state))
        del state
    dino = folder / settings.DINO_REPO
    dino.mkdir(parents=True, exist_ok=True)
    (dino / "config.json").write_bytes(dino_config_bytes(variant_config(variant.name)))
    (dino / "preprocessor_config.json").write_bytes(DINO_PREPROCESSOR)
