"""Tiny Zero123++ v1.2 components, saved in the released ``sudo-ai/zero123plus-v1.2`` layout.

Same classes, sub-folders, file names and config keys as the real snapshot, with
small widths so that a CPU test runs in seconds:

- UNet: the real block types (3 cross-attention down blocks + a plain one, the
  mirrored up blocks), linear projections, cross-attention width = text width;
- a four-level VAE (downsampling factor 8, as the real one), tiny CLIP text / vision towers (77 text
  positions, projection width = cross-attention width), a BPE tokenizer written as
  ``vocab.json`` + ``merges.txt``;
- the real scheduler config and the real preprocessor values with sizes scaled
  down (CLIP 32 px, VAE 64 px); ``model_index.json`` with 77 ramping coefficients.

Also the InstantMesh-style white-background UNet: a plain ``torch.save`` state dict
with the UNet's keys (``diffusion_pytorch_model.bin``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from instantmesh_cli.multiview.loading import ZERO123PLUS_COMPONENTS, ZERO123PLUS_SCHEDULER_CONFIG
from instantmesh_cli.random_weights import stand_in_ramp

TEXT_WIDTH = 32
CLIP_SIZE = 32  # CLIP feature-extractor crop (real: 224)
VAE_SIZE = 64  # VAE feature-extractor crop (real: 512) -> 8x8 reference latent
GRID_W, GRID_H = 128, 192  # small output grid for library tests: 2 x 3 tiles of 64 px

SCHEDULER_CONFIG = {**ZERO123PLUS_SCHEDULER_CONFIG, "_diffusers_version": "0.20.0.dev0"}

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

TINY_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": [2, 2, 4, 4],
    "block_out_channels": [16, 32, 32, 32],
    "center_input_sample": False,
    "cross_attention_dim": TEXT_WIDTH,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
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
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}

# A toy BPE vocabulary in CLIP's format (end-of-word "</w>", "!" = pad id 0).
VOCAB = {
    "!": 0,
    "a": 1,
    "b": 2,
    "c": 3,
    "a</w>": 4,
    "b</w>": 5,
    "c</w>": 6,
    "ab</w>": 7,
    "<|startoftext|>": 8,
    "<|endoftext|>": 9,
}
MERGES = "#version: 0.2\na b</w>\n"


def ramping_coefficients() -> list[float]:
    """77 values shaped like the real ones (small at the start, ~1.2 at the end)."""
    return stand_in_ramp()


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def tiny_unet(seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_UNET_CONFIG)


def make_tiny_zero123plus(folder: Path, seed: int = 0) -> Path:
    """Write the tiny model folder; returns ``folder``."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(
        folder / "model_index.json",
        {
            "_class_name": ["pipeline", "Zero123PlusPipeline"],
            "_diffusers_version": "0.20.0.dev0",
            **ZERO123PLUS_COMPONENTS,
            "ramping_coefficients": ramping_coefficients(),
        },
    )
    _write_json(folder / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    _write_json(
        folder / "feature_extractor_clip" / "preprocessor_config.json",
        {
            "crop_size": {"height": CLIP_SIZE, "width": CLIP_SIZE},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": CLIP_MEAN,
            "image_processor_type": "CLIPImageProcessor",
            "image_std": CLIP_STD,
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": CLIP_SIZE},
        },
    )
    _write_json(
        folder / "feature_extractor_vae" / "preprocessor_config.json",
        {
            "crop_size": {"height": VAE_SIZE, "width": VAE_SIZE},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": 0.5,
            "image_processor_type": "CLIPImageProcessor",
            "image_std": 0.8,
            "resample": 2,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": VAE_SIZE},
        },
    )
    tok = folder / "tokenizer"
    tok.mkdir(exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps(VOCAB), encoding="utf-8")
    (tok / "merges.txt").write_text(MERGES, encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "!",
        "unk_token": "<|endoftext|>",
    }
    _write_json(tok / "special_tokens_map.json", special)
    _write_json(
        tok / "tokenizer_config.json",
        {**special, "do_lower_case": True, "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"},
    )

    torch.manual_seed(seed)
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=TEXT_WIDTH,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            vocab_size=len(VOCAB),
            hidden_act="gelu",
            projection_dim=16,
            bos_token_id=VOCAB["<|startoftext|>"],
            eos_token_id=VOCAB["<|endoftext|>"],
            pad_token_id=0,
        )
    )
    text.save_pretrained(folder / "text_encoder")
    vision = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=TEXT_WIDTH,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=CLIP_SIZE,
            patch_size=8,
            projection_dim=TEXT_WIDTH,
            hidden_act="gelu",
        )
    )
    vision.save_pretrained(folder / "vision_encoder")
    vae = AutoencoderKL(  # four levels like the real one: downsampling factor 8
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=VAE_SIZE,
        scaling_factor=0.18215,
    )
    vae.save_pretrained(folder / "vae")
    tiny_unet(seed + 1).save_pretrained(folder / "unet")
    return folder


def make_white_unet_bin(path: Path, seed: int = 7) -> Path:
    """An InstantMesh-style ``diffusion_pytorch_model.bin``: plain UNet state dict, other weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_unet(seed).state_dict(), path)
    return path
