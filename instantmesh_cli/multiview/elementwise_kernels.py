"""Two of the UNet's elementwise passes in Triton: GEGLU's gating, and a residual sum with convolution biases.

Why (H200, 10 eager steps at the default settings, 236 ms of kernel time):

- **GEGLU.** diffusers computes ``h, gate = proj(x).chunk(2, dim=-1); h * gelu(gate)``. The two halves
  are strided views, so torch runs the GELU and the product in its non-vectorised kernels: 9.95 ms
  and 8.72 ms, with the GELU's output written out and read back. :func:`geglu` reads both halves
  once and writes the product.
- **Convolution biases.** torch adds a cuDNN convolution's bias in a pass of its own, a broadcast
  addition over the whole output (865 of them, 11.5 ms). In a ResNet block the first convolution's
  bias can move into the GroupNorm that follows (:mod:`group_norm_kernels`' per-channel added
  term) and the second's, with the shortcut's, into the residual sum: :func:`add_with_bias`
  computes ``a + b + bias[c]`` in one pass.

Both compute in float32 and round once to the activations' dtype, where torch rounds after each
operation (at most about one unit in the last place apart).

Triton is imported on first use only (the CPU build of torch has none); :func:`available` says
whether these kernels can run for a tensor (CUDA, or Triton's CPU interpreter with
``TRITON_INTERPRET=1``: the tests' way in).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from instantmesh_cli.multiview.group_norm_kernels import triton_kernels, triton_runs_on

# 128 fp16 values = 256 contiguous bytes a row per load; 32 rows a program.
BLOCK_R = 32
BLOCK_C = 128
_SQRT_HALF = 1 / math.sqrt(2)


@triton_kernels
def _kernels(triton: Any, tl: Any):
    """Compile-on-first-call Triton kernels."""

    # Row counts are not specialised on: each distinct divisibility would compile another copy.
    @triton.jit(do_not_specialize=["rows"])
    def geglu_kernel(x_ptr, out_ptr, rows, width, SQRT_HALF: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        ok = (r < rows)[:, None] & (cols < width)[None, :]
        at = r[:, None] * (2 * width) + cols[None, :]
        h = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
        gate = tl.load(x_ptr + at + width, mask=ok, other=0.0).to(tl.float32)
        y = h * (0.5 * gate * (1.0 + tl.math.erf(gate * SQRT_HALF)))  # exact GELU, as F.gelu's default
        tl.store(out_ptr + r[:, None] * width + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=ok)

    @triton.jit(do_not_specialize=["rows"])
    def add_bias_kernel(a_ptr, b_ptr, bias_ptr, bias2_ptr, out_ptr, rows, channels,
                        HAS_BIAS: tl.constexpr, HAS_BIAS2: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        col_ok = cols < channels
        ok = (r < rows)[:, None] & col_ok[None, :]
        at = r[:, None] * channels + cols[None, :]
        y = tl.load(a_ptr + at, mask=ok, other=0.0).to(tl.float32) + tl.load(b_ptr + at, mask=ok, other=0.0).to(
            tl.float32)
        if HAS_BIAS:
            y += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_BIAS2:
            y += tl.load(bias2_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        tl.store(out_ptr + at, y.to(out_ptr.dtype.element_ty), mask=ok)

    return triton, geglu_kernel, add_bias_kernel


def available(x: torch.Tensor) -> bool:
    """Whether these kernels can run on ``x``'s device (CUDA, or CPU under ``TRITON_INTERPRET=1``), with Triton."""
    return triton_runs_on(x) and _kernels() is not None


def geglu(projected: torch.Tensor) -> torch.Tensor:
    """``h * F.gelu(gate)`` for ``h, gate = projected.chunk(2, dim=-1)``; ``projected`` contiguous, any leading shape."""
    triton, geglu_kernel, _ = _kernels()
    if not projected.is_contiguous() or projected.shape[-1] % 2:
        raise ValueError(f"geglu: needs a contiguous tensor with an even last dimension, got {tuple(projected.shape)}")
    width = projected.shape[-1] // 2
    rows = projected.numel() // projected.shape[-1]
    out = projected.new_empty((*projected.shape[:-1], width))
    geglu_kernel[(triton.cdiv(rows, BLOCK_R), triton.cdiv(width, BLOCK_C))](
        projected, out, rows, width, SQRT_HALF=_SQRT_HALF, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return out


def _channels_last_pair(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and a.dim() == 4
            and a.is_contiguous(memory_format=torch.channels_last)
            and b.is_contiguous(memory_format=torch.channels_last))


def add_with_bias(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None,
                  bias2: torch.Tensor | None = None) -> torch.Tensor:
    """``a + b + bias[c] (+ bias2[c])`` for two (n, c, h, w) tensors; one pass where both are channels-last
    and the kernels run, torch's additions in that order otherwise."""
    if not (_channels_last_pair(a, b) and available(a)):
        out = a + b
        for extra in (bias, bias2):
            if extra is not None:
                out = out + extra.view(1, -1, 1, 1)
        return out
    triton, _, add_bias_kernel = _kernels()
    channels = a.shape[1]
    rows = a.numel() // channels
    out = torch.empty_like(a, memory_format=torch.channels_last)
    add_bias_kernel[(triton.cdiv(rows, BLOCK_R), triton.cdiv(channels, BLOCK_C))](
        a, b, bias, bias2, out, rows, channels, HAS_BIAS=bias is not None, HAS_BIAS2=bias2 is not None,
        BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    return out
