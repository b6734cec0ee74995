"""Keeping the UNet's and the VAE's activations channels-last (NHWC) from one convolution to the next.

The convolutions run in NHWC (the pipeline's ``channels_last``), but two things turned their
activations back to NCHW, so that every next convolution copied them back again:

- torch's GroupNorm on CUDA takes NCHW only: a channels-last input is copied to NCHW first, and
  its output is NCHW. Its statistics kernel also runs one block per (sample, group), 64 blocks
  for the UNet's CFG batch, on a GPU with 132 multiprocessors;
- diffusers' ``Transformer2DModel`` ends with ``.permute(0, 3, 1, 2).contiguous()``, which
  writes its (already NHWC-ordered) tokens out as NCHW.

Profiled on the H200 (10 eager steps, fp16): copies between the two layouts were 73 ms of 375 ms
of kernel time (1,741 copies) and GroupNorm's statistics another 55 ms.

:func:`keep_channels_last` swaps each ``nn.GroupNorm`` for :class:`ChannelsLastGroupNorm` (same
parameters, same state dict) and drops that ``.contiguous()``. The arithmetic follows torch's
kernel: the statistics accumulate in float32 and are kept in the activations' dtype (torch's
kernel keeps its mean and 1/std in that dtype too); the output is ``x * scale + shift``
computed in float32 and rounded once, with scale and shift rounded to the activations' dtype
too (torch keeps those two in float32: at most about one more rounding step of the output).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn


def group_norm_channels_last(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """``F.group_norm(x, groups, weight, bias, eps)`` for a 4-D channels-last ``x``, returned channels-last.

    Six kernels, each over the tensor or its (n, groups) statistics; in a CUDA graph the count
    matters as much as the bytes (every tiny kernel is a few microseconds of the step).
    """
    n, c, h, w = x.shape
    per_group = c // groups
    grouped = x.permute(0, 2, 3, 1).reshape(n, h * w, groups, per_group)  # a view of the NHWC memory
    var, mean = torch.var_mean(grouped, dim=(1, 3), correction=0)  # Welford in float32, stored like x: (n, groups)
    scale = torch.rsqrt(var + eps)[:, :, None]  # (n, groups, 1)
    if weight is not None:
        scale = scale * weight.view(groups, per_group)
    else:
        scale = scale.expand(n, groups, per_group)
    if bias is None:
        shift = -mean[:, :, None] * scale
    else:
        shift = torch.addcmul(bias.view(groups, per_group), mean[:, :, None], scale, value=-1)
    out = torch.empty_like(x, memory_format=torch.channels_last)
    return torch.addcmul(shift.reshape(n, c, 1, 1), x, scale.reshape(n, c, 1, 1), out=out)


class ChannelsLastGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that keeps a channels-last 4-D input channels-last (any other input, and any call that
    autograd records: torch's kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, self.weight, self.bias)):
            return super().forward(x)  # the output buffer below (addcmul's out=) cannot be differentiated
        return group_norm_channels_last(x, self.num_groups, self.weight, self.bias, self.eps)


def _swap_group_norms(root: nn.Module) -> int:
    count = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.GroupNorm:
                swapped = ChannelsLastGroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
                swapped.weight, swapped.bias = child.weight, child.bias  # the same Parameters: nothing is copied
                swapped.train(child.training)
                setattr(parent, name, swapped)
                count += 1
    return count


def _output_channels_last(
    module: Any, hidden_states: torch.Tensor, residual: torch.Tensor, batch_size: int, height: int, width: int,
    inner_dim: int,
) -> torch.Tensor:
    """diffusers' ``Transformer2DModel._get_output_for_continuous_inputs`` without its ``.contiguous()``:
    the same values, left in the NHWC order the tokens already have."""
    if module.use_linear_projection:
        hidden_states = module.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)
    else:
        hidden_states = hidden_states.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)
        hidden_states = module.proj_out(hidden_states)
    return hidden_states + residual


def _keep_transformer_outputs(root: nn.Module) -> int:
    try:
        from diffusers.models.transformers.transformer_2d import Transformer2DModel
    except ImportError:
        return 0
    count = 0
    for module in root.modules():
        # Only where the method is diffusers' own: a diffusers that changed it keeps its copy.
        if isinstance(module, Transformer2DModel) and hasattr(Transformer2DModel, "_get_output_for_continuous_inputs"):
            module._get_output_for_continuous_inputs = functools.partial(_output_channels_last, module)
            count += 1
    return count


def keep_channels_last(*modules: nn.Module) -> tuple[int, int]:
    """Make ``modules`` keep channels-last activations (above); (GroupNorms swapped, transformer outputs kept)."""
    norms = outputs = 0
    for module in modules:
        norms += _swap_group_norms(module)
        outputs += _keep_transformer_outputs(module)
    return norms, outputs
