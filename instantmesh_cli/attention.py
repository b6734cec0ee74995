"""Scaled dot-product attention with the fused kernel chosen by the size of the call.

Every attention in imesh goes through :func:`attention` (the UNet's self- and cross-attention, the
CLIP vision tower, the DINO encoder, the triplane transformer). On a Hopper GPU torch 2.11 hands
every call to cuDNN's fused attention, which builds an execution graph the first time each thread
meets each shape: 40-65 ms per shape on the H200, and one job meets 20 of them, so a new process
paid over a second for them (in its first-use replay, ``first_use.py``). FlashAttention-2, the other
fused kernel torch ships, builds nothing (0.2-0.4 ms at a new shape) and is about as fast where the
work is small; cuDNN's kernel is faster where it is large (the level-0 self-attention of the UNet's
read pass: 9,600 queries x 13,696 keys, 0.70 ms against 1.17 ms with FlashAttention-2). So calls of
at least :data:`CUDNN_MIN_FLOP` keep torch's choice (three shapes in a job), the rest run without cuDNN.

Measured on the H200 (torch 2.11, cuDNN 9.19): see the README's Performance section.
"""

from __future__ import annotations

import contextlib
import math
from typing import ContextManager

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# Work (4 x batch x heads x queries x keys x width) from which a call keeps cuDNN. Measured warm on the
# H200: the UNet's level-0 self-attention (read pass 3.4e11: 0.70 against 1.17 ms; batched write pass
# 2.1e11: 0.47 against 0.75 ms) and level-1 read pass (4.2e10: 0.11 against 0.19 ms) gain 176, 21 and
# 32 ms a job from it. The next largest calls, the triplane transformer's (3.9e10, 3.0e10) and the level-1
# write pass (2.7e10), gain 1-3 ms a job: less than the graph each costs a new process.
CUDNN_MIN_FLOP = 4.0e10


def attention_flop(query: torch.Tensor, key: torch.Tensor) -> float:
    """Floating-point operations of one attention call on (batch, heads, tokens, width) inputs."""
    *lead, q_len, width = query.shape
    return 4.0 * math.prod(lead) * q_len * key.shape[-2] * width


def uses_cudnn(query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether this call is big enough to keep cuDNN's kernel (see the module's notes)."""
    return attention_flop(query, key) >= CUDNN_MIN_FLOP


def kernel_choice(query: torch.Tensor, key: torch.Tensor) -> ContextManager[None]:
    """What to run a call to ``scaled_dot_product_attention`` on these inputs inside.

    Only CUDA calls are steered; on the CPU (and for calls cuDNN should keep) torch chooses as it
    always does. Flash, memory-efficient and math stay allowed, so a call that none of the fused
    kernels takes still runs. Compiled code is left to Inductor.
    """
    if query.device.type != "cuda" or uses_cudnn(query, key) or torch.compiler.is_compiling():
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, scale: float | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(query, key, value, scale=scale)`` (no mask, no dropout) on the
    kernel :func:`kernel_choice` picks."""
    with kernel_choice(query, key):
        return F.scaled_dot_product_attention(query, key, value, scale=scale)
