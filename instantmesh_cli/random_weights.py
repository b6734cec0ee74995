"""Random weights in the released file layouts: full size for ``imesh bench --random-weights``,
tiny for ``imesh selftest`` and the tests.

Both folders have the layout of ``imesh download --to DIR`` (``DIR/<repo>/<file>``) and
its manifest, so they load through exactly the code path real weights take: the hub
layer, the pickle → safetensors conversion, the strict loaders. Their manifest declares
revisions of their own (:data:`RANDOM_REVISION`, :data:`TINY_REVISION`): no size or
hash of the released files applies to them, and no one mistakes them for the real files.

What is random and what is not:

- Zero123++ parts (UNet, VAE, CLIP text and vision encoders) are built from the released
  configs (``multiview/loading.py``) — or, tiny, from the same block types at small widths
  (:data:`TINY`) — with PyTorch's default initialisation; the scheduler config and the
  preprocessor values are the released ones (crop sizes scaled down when tiny); the
  tokenizer holds CLIP's special tokens (the pipeline only ever encodes ""), plus a toy
  BPE vocabulary when tiny so that tests can tokenize.
- The reconstruction checkpoint is :func:`~instantmesh_cli.reconstruction.synthetic.shape_state`:
  random encoder and transformer weights (at full size the transformer's residual branches
  scaled down, the same amount of compute) and SDF / colour heads designed so that the mesh
  stage sees a closed surface (an octahedron) rather than the millions of random faces random
  heads give. A tiny checkpoint's architecture is written beside it
  (``imesh-lrm-config-<variant>.json``), which is how the loader knows its sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instantmesh_cli import settings

# Not Hub commits: random weights belong to no revision (see the module docstring).
RANDOM_REVISION = "0" * 40
TINY_REVISION = "imesh-tiny-random"
BENCH_SEMI_AXES = (0.8, 0.7, 0.75)  # model x, y, z: fills the box like a typical object
MARKER = "imesh-random-weights.json"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": "<|endoftext|>"}


@dataclass(frozen=True)
class Zero123PlusSize:
    """The sizes a stand-in Zero123++ is written at (the file layout never changes)."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text: dict[str, Any]  # CLIPTextConfig arguments
    vision: dict[str, Any]  # CLIPVisionConfig arguments
    clip_size: int  # CLIP feature-extractor crop
    vae_size: int  # VAE feature-extractor crop
    vocab: dict[str, int]
    merges: str
    half: bool  # weights saved in fp16 (as released) or fp32
    unet_weights: bool = False  # also sudo-ai's own UNet weights (only --original-unet reads them)


def _full() -> Zero123PlusSize:
    from instantmesh_cli.multiview.loading import (ZERO123PLUS_TEXT_CONFIG, ZERO123PLUS_UNET_CONFIG,
                                                   ZERO123PLUS_VAE_CONFIG, ZERO123PLUS_VISION_CONFIG)

    return Zero123PlusSize(
        unet=ZERO123PLUS_UNET_CONFIG, vae=ZERO123PLUS_VAE_CONFIG, text=ZERO123PLUS_TEXT_CONFIG,
        vision=ZERO123PLUS_VISION_CONFIG, clip_size=224, vae_size=512,
        vocab={"!": 0, "<|startoftext|>": 49406, "<|endoftext|>": 49407}, merges="#version: 0.2\n", half=True,
    )


TINY_TEXT_WIDTH = 32
# A toy BPE vocabulary in CLIP's format (end-of-word "</w>", "!" = pad id 0).
TINY_VOCAB = {"!": 0, "a": 1, "b": 2, "c": 3, "a</w>": 4, "b</w>": 5, "c</w>": 6, "ab</w>": 7,
              "<|startoftext|>": 8, "<|endoftext|>": 9}
# The real block types below the top level (cross-attention down blocks, then a plain one,
# mirrored up blocks), linear projections, cross-attention width = text width; small widths.
# The top level (the 120x80-token grid of a 960x640 view sheet) has plain blocks: its
# attention was half of every tiny CPU job for no extra coverage, since the attention code
# is the same at every level and the lower levels exercise it (reference K/V included).
TINY_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [2, 2, 4, 4],
    "block_out_channels": [16, 32, 32, 32],
    "center_input_sample": False,
    "cross_attention_dim": TINY_TEXT_WIDTH,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 8,
    "out_channels": 4,
    "sample_size": 8,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
TINY = Zero123PlusSize(
    unet=TINY_UNET_CONFIG,
    # four levels like the real one: downsampling factor 8
    vae={"block_out_channels": [8, 8, 16, 16], "down_block_types": ["DownEncoderBlock2D"] * 4,
         "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
         "layers_per_block": 1, "norm_num_groups": 8, "sample_size": 64, "scaling_factor": 0.18215},
    text={"hidden_size": TINY_TEXT_WIDTH, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
          "max_position_embeddings": 77, "vocab_size": len(TINY_VOCAB), "hidden_act": "gelu", "projection_dim": 16},
    vision={"hidden_size": TINY_TEXT_WIDTH, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": 32, "patch_size": 8, "projection_dim": TINY_TEXT_WIDTH, "hidden_act": "gelu"},
    clip_size=32,
    vae_size=64,  # -> an 8x8 reference latent
    vocab=TINY_VOCAB,
    merges="#version: 0.2\na b</w>\n",
    half=False,
    unet_weights=True,
)


def stand_in_ramp() -> list[float]:
    """77 ramping coefficients shaped like the released ones (small at the start, ~1.2 at the end)."""
    return [round(0.003 + 1.195 * (i / 76) ** 1.5, 6) for i in range(77)]


def scheduler_config() -> dict[str, Any]:
    from instantmesh_cli.multiview.loading import ZERO123PLUS_SCHEDULER_CONFIG

    return {**ZERO123PLUS_SCHEDULER_CONFIG, "_diffusers_version": "0.20.0.dev0"}


def env_overrides() -> dict[str, str]:
    """Environment that points the registry at the full-size random files (for this process and children)."""
    return {
        settings.revision_env_var(repo): RANDOM_REVISION
        for repo in (settings.ZERO123PLUS_REPO, settings.INSTANTMESH_REPO, settings.DINO_REPO)
    }


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _preprocessor(size: int, mean, std, resample: int) -> dict[str, Any]:
    return {
        "crop_size": {"height": size, "width": size}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": mean, "image_processor_type": "CLIPImageProcessor", "image_std": std, "resample": resample,
        "rescale_factor": 1 / 255, "size": {"shortest_edge": size},
    }


def build_unet(size: Zero123PlusSize, seed: int, device: str = "cpu"):
    """A randomly initialised UNet of ``size`` (seeded)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    with torch.device(device):
        return UNet2DConditionModel(**size.unet)


def write_zero123plus(repo: str | Path, size: Zero123PlusSize, *, seed: int = 0, device: str = "cpu") -> Path:
    """Write a stand-in ``sudo-ai/zero123plus-v1.2`` snapshot of ``size`` into ``repo``; returns ``repo``.

    The released sub-folders, file names and config keys; ``model_index.json`` with 77 ramping coefficients.
    """
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from instantmesh_cli.multiview.loading import ZERO123PLUS_COMPONENTS

    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    _json(repo / "model_index.json", {
        "_class_name": ["pipeline", "Zero123PlusPipeline"], "_diffusers_version": "0.20.0.dev0",
        **ZERO123PLUS_COMPONENTS, "ramping_coefficients": stand_in_ramp(),
    })
    _json(repo / "scheduler" / "scheduler_config.json", scheduler_config())
    _json(repo / "feature_extractor_clip" / "preprocessor_config.json", _preprocessor(size.clip_size, CLIP_MEAN, CLIP_STD, 3))
    _json(repo / "feature_extractor_vae" / "preprocessor_config.json", _preprocessor(size.vae_size, 0.5, 0.8, 2))
    tok = repo / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps(size.vocab), encoding="utf-8")
    (tok / "merges.txt").write_text(size.merges, encoding="utf-8")
    _json(tok / "special_tokens_map.json", _SPECIAL)
    _json(tok / "tokenizer_config.json",
          {**_SPECIAL, "do_lower_case": True, "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"})

    def cast(module):
        # fp32 is what they were built in; diffusers advises against a no-op .to() on some models.
        return module.to(torch.float16) if size.half else module

    ids = {"bos_token_id": size.vocab["<|startoftext|>"], "eos_token_id": size.vocab["<|endoftext|>"], "pad_token_id": 0}
    torch.manual_seed(seed)
    # One part at a time: at full size each is hundreds of MB.
    with torch.device(device):
        text = CLIPTextModel(CLIPTextConfig(**size.text, **ids))
    cast(text).save_pretrained(repo / "text_encoder")
    del text
    with torch.device(device):
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**size.vision))
    cast(vision).save_pretrained(repo / "vision_encoder")
    del vision
    with torch.device(device):
        vae = AutoencoderKL(**size.vae)
    cast(vae).save_pretrained(repo / "vae")
    del vae
    if size.unet_weights:
        cast(build_unet(size, seed + 1, device)).save_pretrained(repo / "unet")
    else:
        _json(repo / "unet" / "config.json", {"_class_name": "UNet2DConditionModel", **size.unet})
    return repo


def write_white_unet(path: str | Path, size: Zero123PlusSize, *, seed: int = 7, device: str = "cpu") -> Path:
    """An InstantMesh-style ``diffusion_pytorch_model.bin``: a plain pickled UNet state dict (other weights)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if size.half else torch.float32
    unet = build_unet(size, seed, device)
    torch.save({k: v.to(dtype).cpu() for k, v in unet.state_dict().items()}, path)
    return path


def is_complete(folder: Path, variant: str) -> bool:
    try:
        return variant in json.loads((folder / MARKER).read_text()).get("variants", [])
    except (OSError, ValueError):
        return False


def _mark(folder: Path, variant: str, note: str, size: str) -> None:
    marker = folder / MARKER
    try:
        done = json.loads(marker.read_text()).get("variants", [])
    except (OSError, ValueError):
        done = []
    _json(marker, {"variants": sorted(set(done) | {variant}), "size": size, "note": note})


def write_random_weights(folder: str | Path, variant: str = settings.DEFAULT_VARIANT, *, device: str = "cpu", seed: int = 0) -> Path:
    """Write (once) every file ``variant`` needs, full size and random, under ``folder``; returns ``folder``."""
    import torch

    folder = Path(folder)
    if is_complete(folder, variant):
        return folder
    torch.manual_seed(seed)
    repo, instantmesh = folder / settings.ZERO123PLUS_REPO, folder / settings.INSTANTMESH_REPO
    if not ((repo / "vision_encoder" / "model.safetensors").exists() and (instantmesh / settings.WHITE_UNET_FILE).exists()):
        size = _full()
        write_zero123plus(repo, size, seed=seed, device=device)
        write_white_unet(instantmesh / settings.WHITE_UNET_FILE, size, seed=seed, device=device)
    _write_reconstruction(folder, variant, seed, tiny=False)
    _mark(folder, variant, "random weights for imesh bench; not a model", "full")
    return folder


def write_tiny_weights(folder: str | Path, variant: str = settings.DEFAULT_VARIANT, *, seed: int = 0) -> Path:
    """Write every file ``variant`` needs, tiny and random, as a ``--weights-dir`` folder with its manifest.

    ``imesh generate --weights-dir folder --offline`` runs on it (in seconds, on a CPU): the
    views are noise and the mesh is the designed octahedron, but every loader, stage and
    writer does its real work.
    """
    from instantmesh_cli import hub
    from instantmesh_cli.hub.manifest import record

    folder = Path(folder)
    revisions = {repo: TINY_REVISION for repo in (settings.ZERO123PLUS_REPO, settings.INSTANTMESH_REPO, settings.DINO_REPO)}
    write_zero123plus(folder / settings.ZERO123PLUS_REPO, TINY, seed=seed)
    write_white_unet(folder / settings.INSTANTMESH_REPO / settings.WHITE_UNET_FILE, TINY, seed=seed + 7)
    _write_reconstruction(folder, variant, seed, tiny=True)
    hub.declare_revisions(folder, revisions)
    for f in settings.model_files(variant, revisions) + [settings.lrm_config_file(variant, revisions)]:
        record(folder, f, folder / f.repo_id / f.filename)
    _mark(folder, variant, "tiny random weights for imesh selftest; not a model", "tiny")
    return folder


def _write_reconstruction(folder: Path, variant_name: str, seed: int, *, tiny: bool) -> None:
    from instantmesh_cli.reconstruction.config import config_to_dict, tiny_config, variant_config
    from instantmesh_cli.reconstruction.synthetic import DINO_PREPROCESSOR, checkpoint_bytes, dino_config_bytes, shape_state

    variant = settings.get_variant(variant_name)
    cfg = variant_config(variant.name)
    target = folder / settings.INSTANTMESH_REPO / variant.checkpoint
    target.parent.mkdir(parents=True, exist_ok=True)
    if tiny:
        cfg = tiny_config(cfg)
        _json(target.with_name(settings.lrm_config_file(variant.name).filename), config_to_dict(cfg))
        target.write_bytes(checkpoint_bytes(shape_state(cfg, seed)))
    elif not target.exists():
        state = shape_state(cfg, seed, semi_axes=BENCH_SEMI_AXES, branch_scale=0.05, random_surface_heads=True)
        target.write_bytes(checkpoint_bytes(state))
        del state
    dino = folder / settings.DINO_REPO
    dino.mkdir(parents=True, exist_ok=True)
    (dino / "config.json").write_bytes(dino_config_bytes(cfg))
    (dino / "preprocessor_config.json").write_bytes(DINO_PREPROCESSOR)
