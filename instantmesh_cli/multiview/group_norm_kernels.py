"""GroupNorm (+ an added per-channel term, + SiLU) on channels-last CUDA activations, in three Triton kernels.

Why our own kernels: in the UNet's ResNet blocks a GroupNorm is always followed by a SiLU, and the
second one is preceded by the time embedding's per-channel addition. torch runs those as separate
passes over the activations (add, statistics, normalise, SiLU: four reads and three writes of a
tensor of up to 12 MB a step), and its reduction over the NHWC view (``var_mean`` over a
non-contiguous (rows, channels-of-a-group) pair of dimensions) reaches a small part of the
memory bandwidth. Here:

1. ``_channel_sums``: every program reads a (rows, 64 channels) stripe of the NHWC memory, fully
   coalesced, and writes per-channel sums of ``x - x[row 0]`` and of their squares. Shifting
   by a value of the same channel keeps float32 sums of squares from cancelling when the mean
   is large against the spread (the "shifted data" form of the variance).
2. ``_group_scale_shift``: one program per (sample, group) adds up its channels' partial sums
   (in a fixed order: the result repeats bit for bit), combines channels into the group's mean
   and variance (Chan's formula for pooled groups), and folds mean, 1/std, weight, bias and the
   added term into one float32 scale and shift per (sample, channel).
3. ``_scale_shift_act``: ``y = x * scale + shift`` (then ``y * sigmoid(y)``) in float32, rounded
   once to the activations' dtype.

``x + addend`` is never formed: the added term (per sample and channel, per channel, or both: the
time embedding, and the bias of the convolution before, which then runs without it) moves a
channel's mean and nothing else, so it enters only the shift. Compared with torch's kernels the
output skips two roundings to half precision (of ``x + addend`` and of the normalised value before
the SiLU).

Triton is imported on first use only (the CPU build of torch has none); :func:`available` says
whether these kernels can run for a tensor.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import torch

# 64 channels of fp16 = one 128-byte row segment per load: every UNet and VAE width is a multiple.
BLOCK_C = 64
BLOCK_R = 64
# Statistics programs to aim for: a few per multiprocessor (132 on an H100/H200).
_STAT_PROGRAMS = 1024
BLOCK_S = 32  # partial sums read per step by the per-group program


def keep_kernels_in_cache() -> None:
    """Keep Triton's compiled kernels with imesh's other caches, so only the first process on a machine
    compiles them. Environment (a value the user set wins): call it on the main thread before others
    start, since ``setenv`` is not safe beside threads that read the environment (``Models`` does; the
    first kernel call does it too, for a pipeline built without ``Models``)."""
    from instantmesh_cli.settings import cache_dir

    os.environ.setdefault("TRITON_CACHE_DIR", str(cache_dir() / "triton"))


def triton_kernels(build: Callable[[Any, Any], Any]) -> Callable[[], Any]:
    """``build(triton, triton.language)``'s kernels, made on the first call and kept: what every module of
    imesh's kernels starts from. None where Triton is missing or unusable; the kernels are kept in imesh's
    cache (:func:`keep_kernels_in_cache`), and so is the key Triton names them by (``triton_key.py``)."""

    @functools.cache
    def kernels() -> Any:
        try:
            import triton
            import triton.language as tl
        except Exception:  # noqa: BLE001 - a missing or broken Triton means "not available", whatever it raises
            return None
        if "TRITON_CACHE_DIR" not in os.environ:
            keep_kernels_in_cache()
        from instantmesh_cli.multiview import triton_key

        triton_key.install(triton)
        return build(triton, tl)

    return kernels


def triton_runs_on(x: torch.Tensor) -> bool:
    """Whether Triton kernels can take ``x``'s device: CUDA, or the CPU under ``TRITON_INTERPRET=1`` (Triton's
    CPU interpreter, the tests' way in)."""
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


@triton_kernels
def _kernels(triton: Any, tl: Any):
    """Compile-on-first-call Triton kernels."""

    # Row and split counts are not specialised on: each distinct divisibility would compile another
    # copy (about half a second each, on a machine's first run), and they do not shape the loads.
    @triton.jit(do_not_specialize=["rows", "rows_per_split"])
    def channel_sums(x_ptr, partial_ptr, rows, channels, rows_per_split,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        split = tl.program_id(0)
        block = tl.program_id(1)
        n = tl.program_id(2).to(tl.int64)
        splits = tl.num_programs(0)
        cols = block * BLOCK_C + tl.arange(0, BLOCK_C)
        col_ok = cols < channels
        base = x_ptr + n * rows * channels
        origin = tl.load(base + cols, mask=col_ok, other=0.0).to(tl.float32)
        total = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        squares = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
        start = split * rows_per_split
        for offset in range(0, rows_per_split, BLOCK_R):
            r = start + offset + tl.arange(0, BLOCK_R)
            ok = (r < rows)[:, None] & col_ok[None, :]
            v = tl.load(base + r.to(tl.int64)[:, None] * channels + cols[None, :], mask=ok, other=0.0)
            d = tl.where(ok, v.to(tl.float32) - origin[None, :], 0.0)
            total += d
            squares += d * d
        out = partial_ptr + (n * splits + split) * 2 * channels + cols
        tl.store(out, tl.sum(total, axis=0), mask=col_ok)
        tl.store(out + channels, tl.sum(squares, axis=0), mask=col_ok)

    @triton.jit(do_not_specialize=["rows", "splits", "per_group"])
    def group_scale_shift(partial_ptr, x_ptr, weight_ptr, bias_ptr, addend_ptr, channel_addend_ptr,
                          scale_ptr, shift_ptr, rows, channels, splits, per_group, eps,
                          HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ADDEND: tl.constexpr,
                          HAS_CHANNEL_ADDEND: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_G: tl.constexpr):
        group = tl.program_id(0)
        n = tl.program_id(1).to(tl.int64)
        lane = tl.arange(0, BLOCK_G)
        lane_ok = lane < per_group
        cols = group * per_group + lane
        total = tl.zeros([BLOCK_G], dtype=tl.float32)
        squares = tl.zeros([BLOCK_G], dtype=tl.float32)
        for first in range(0, splits, BLOCK_S):
            s = first + tl.arange(0, BLOCK_S)
            ok = (s < splits)[:, None] & lane_ok[None, :]
            at = partial_ptr + (n * splits + s.to(tl.int64))[:, None] * 2 * channels + cols[None, :]
            total += tl.sum(tl.load(at, mask=ok, other=0.0), axis=0)
            squares += tl.sum(tl.load(at + channels, mask=ok, other=0.0), axis=0)
        origin = tl.load(x_ptr + n * rows * channels + cols, mask=lane_ok, other=0.0).to(tl.float32)
        mean_c = origin + total / rows
        added = tl.zeros([BLOCK_G], dtype=tl.float32)
        if HAS_ADDEND:
            added += tl.load(addend_ptr + n * channels + cols, mask=lane_ok, other=0.0).to(tl.float32)
        if HAS_CHANNEL_ADDEND:
            added += tl.load(channel_addend_ptr + cols, mask=lane_ok, other=0.0).to(tl.float32)
        if HAS_ADDEND or HAS_CHANNEL_ADDEND:
            mean_c += added
        spread_c = tl.maximum(squares - total * total / rows, 0.0)  # rows x the channel's variance
        mean = tl.sum(tl.where(lane_ok, mean_c, 0.0), axis=0) / per_group
        apart = tl.where(lane_ok, mean_c - mean, 0.0)
        var = (tl.sum(tl.where(lane_ok, spread_c, 0.0), axis=0) + rows * tl.sum(apart * apart, axis=0)) / (
            rows * per_group)
        scale = tl.zeros([BLOCK_G], dtype=tl.float32) + tl.rsqrt(var + eps)
        if HAS_WEIGHT:
            scale *= tl.load(weight_ptr + cols, mask=lane_ok, other=0.0).to(tl.float32)
        shift = -mean * scale
        if HAS_ADDEND or HAS_CHANNEL_ADDEND:
            shift += added * scale
        if HAS_BIAS:
            shift += tl.load(bias_ptr + cols, mask=lane_ok, other=0.0).to(tl.float32)
        tl.store(scale_ptr + n * channels + cols, scale, mask=lane_ok)
        tl.store(shift_ptr + n * channels + cols, shift, mask=lane_ok)

    @triton.jit(do_not_specialize=["rows"])
    def scale_shift_act(x_ptr, scale_ptr, shift_ptr, out_ptr, rows, channels,
                        SILU: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        n = tl.program_id(2).to(tl.int64)
        col_ok = cols < channels
        ok = (r < rows)[:, None] & col_ok[None, :]
        at = n * rows * channels + r[:, None] * channels + cols[None, :]
        v = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
        scale = tl.load(scale_ptr + n * channels + cols, mask=col_ok, other=0.0)
        shift = tl.load(shift_ptr + n * channels + cols, mask=col_ok, other=0.0)
        y = v * scale[None, :] + shift[None, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(out_ptr + at, y.to(out_ptr.dtype.element_ty), mask=ok)

    return triton, channel_sums, group_scale_shift, scale_shift_act


def available(x: torch.Tensor) -> bool:
    """Whether :func:`group_norm_nhwc` can run on ``x``: a channels-last 4-D CUDA tensor, with Triton.

    ``TRITON_INTERPRET=1`` (Triton's CPU interpreter) lets them run on CPU tensors too: the tests' way in.
    """
    if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or not triton_runs_on(x):
        return False
    return _kernels() is not None


def group_norm_nhwc(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    *,
    addend: torch.Tensor | None = None,
    channel_addend: torch.Tensor | None = None,
    silu: bool = False,
) -> torch.Tensor:
    """``F.group_norm(x + addend + channel_addend, groups, weight, bias, eps)``, then SiLU if ``silu``;
    channels-last in and out.

    ``addend``: one value per (sample, channel), any shape of n x c elements (the ResNet blocks'
    ``time_emb_proj(temb)[:, :, None, None]``); ``channel_addend``: one value per channel (the bias of the
    convolution that made ``x``, left out of it).
    """
    triton, channel_sums, group_scale_shift, scale_shift_act = _kernels()
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"GroupNorm: {c} channels do not split into {groups} groups")
    rows = h * w
    per_group = c // groups
    row_blocks = triton.cdiv(rows, BLOCK_R)
    col_blocks = triton.cdiv(c, BLOCK_C)
    splits = max(1, min(row_blocks, triton.cdiv(_STAT_PROGRAMS, n * col_blocks)))
    rows_per_split = triton.cdiv(row_blocks, splits) * BLOCK_R
    splits = triton.cdiv(rows, rows_per_split)

    partial = torch.empty((n, splits, 2, c), device=x.device, dtype=torch.float32)
    channel_sums[(splits, col_blocks, n)](x, partial, rows, c, rows_per_split, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)

    scale = torch.empty((n, c), device=x.device, dtype=torch.float32)
    shift = torch.empty_like(scale)
    if addend is not None:
        addend = addend.reshape(n, c).contiguous()
    group_scale_shift[(groups, n)](
        partial, x, weight, bias, addend, channel_addend, scale, shift, rows, c, splits, per_group, eps,
        HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, HAS_ADDEND=addend is not None,
        HAS_CHANNEL_ADDEND=channel_addend is not None, BLOCK_S=BLOCK_S, BLOCK_G=triton.next_power_of_2(per_group),
    )

    out = torch.empty_like(x, memory_format=torch.channels_last)
    scale_shift_act[(row_blocks, col_blocks, n)](x, scale, shift, out, rows, c, SILU=silu,
                                                BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return out
