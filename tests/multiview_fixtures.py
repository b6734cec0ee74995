"""Tiny Zero123++ v1.2 components in the released ``sudo-ai/zero123plus-v1.2`` layout, for tests.

The writer lives in the library (:mod:`instantmesh_cli.random_weights`, size ``TINY``),
once for the tests, ``imesh selftest`` and the benchmark's full-size weights; this module
names what the tests use:

- :func:`make_tiny_zero123plus`: the tiny model folder (real block types, small widths, the
  real scheduler config, preprocessor crops CLIP 32 px / VAE 64 px, a toy BPE tokenizer);
- :func:`make_white_unet_bin`: the InstantMesh-style white-background UNet, a plain
  ``torch.save`` state dict with the UNet's keys (``diffusion_pytorch_model.bin``).
"""

from __future__ import annotations

from pathlib import Path

from instantmesh_cli import random_weights as rw

CLIP_MEAN = rw.CLIP_MEAN
CLIP_STD = rw.CLIP_STD
GRID_W, GRID_H = 128, 192  # small output grid for library tests: 2 x 3 tiles of 64 px
SCHEDULER_CONFIG = rw.scheduler_config()


def ramping_coefficients() -> list[float]:
    return rw.stand_in_ramp()


def tiny_unet(seed: int):
    return rw.build_unet(rw.TINY, seed)


def make_tiny_zero123plus(folder: Path, seed: int = 0) -> Path:
    return rw.write_zero123plus(folder, rw.TINY, seed=seed)


def make_white_unet_bin(path: Path, seed: int = 7) -> Path:
    return rw.write_white_unet(path, rw.TINY, seed=seed)
