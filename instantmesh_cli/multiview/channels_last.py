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

On CUDA with Triton the swapped GroupNorms run :mod:`group_norm_kernels` instead (three kernels,
float32 statistics and scale/shift), and each ResNet block's forward is
:func:`_resnet_forward`: diffusers' arithmetic, with its two "add the time embedding, GroupNorm,
SiLU" runs each made one fused norm, and the output's division by a scale factor of 1 left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instantmesh_cli.multiview import elementwise_kernels, group_norm_kernels
from instantmesh_cli.multiview.instance_patches import patch_instances


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
    autograd records: torch's kernel).

    ``kernels``: use :mod:`group_norm_kernels` where they can run (CUDA with Triton).
    """

    kernels: bool = True

    def _fast(self, x: torch.Tensor) -> bool:
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return False
        # The output buffers (addcmul's out=, the kernels') cannot be differentiated.
        return not (torch.is_grad_enabled()
                    and any(t is not None and t.requires_grad for t in (x, self.weight, self.bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fuses(x):
            return group_norm_kernels.group_norm_nhwc(x, self.num_groups, self.weight, self.bias, self.eps)
        if not self._fast(x):
            return super().forward(x)
        return group_norm_channels_last(x, self.num_groups, self.weight, self.bias, self.eps)

    def fuses(self, x: torch.Tensor) -> bool:
        """Whether :meth:`add_norm_silu` runs as one fused pass over ``x`` (the kernels, on a channels-last ``x``)."""
        return self.kernels and self._fast(x) and group_norm_kernels.available(x)

    def add_norm_silu(self, x: torch.Tensor, addend: torch.Tensor | None, *, silu: bool,
                      channel_addend: torch.Tensor | None = None) -> torch.Tensor:
        """``silu(self(x + addend + channel_addend))`` (without the SiLU if not ``silu``; ``addend``: n x c
        values or None; ``channel_addend``: c values or None), in one pass over ``x`` where it :meth:`fuses`."""
        if self.fuses(x):
            return group_norm_kernels.group_norm_nhwc(x, self.num_groups, self.weight, self.bias, self.eps,
                                                      addend=addend, channel_addend=channel_addend, silu=silu)
        if channel_addend is not None:
            x = x + channel_addend.view(1, -1, 1, 1)
        if addend is not None:
            x = x + addend.reshape(x.shape[0], x.shape[1], 1, 1)
        x = self(x)
        return F.silu(x) if silu else x


def _swap_group_norms(root: nn.Module, kernels: bool) -> int:
    count = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.GroupNorm:
                swapped = ChannelsLastGroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
                swapped.weight, swapped.bias = child.weight, child.bias  # the same Parameters: nothing is copied
                swapped.train(child.training)
                swapped.kernels = kernels
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
    return patch_instances([root], "diffusers.models.transformers.transformer_2d.Transformer2DModel",
                           "_get_output_for_continuous_inputs", _output_channels_last)


def _without_bias(conv: nn.Module, x: torch.Tensor, fold: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``conv(x)`` with its bias left out and returned, when folding and ``conv`` is a plain ``nn.Conv2d``
    with a bias; else ``conv(x)`` and None. cuDNN's output is the same either way: torch adds the bias
    in a pass of its own."""
    if fold and type(conv) is nn.Conv2d and conv.bias is not None:
        return conv._conv_forward(x, conv.weight, None), conv.bias
    return conv(x), None


def _resnet_forward(block: Any, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args: Any,
                    **kwargs: Any) -> torch.Tensor:
    """diffusers' ``ResnetBlock2D.forward`` (``time_embedding_norm="default"``), with "+ temb, norm2, SiLU" and
    "norm1, SiLU" each one :meth:`ChannelsLastGroupNorm.add_norm_silu`.

    Where the norms fuse, the convolutions' biases are folded into the passes that follow (see
    :mod:`elementwise_kernels`): conv1's into norm2's added term, conv2's and the shortcut's into the
    residual sum. The same operations in the same order otherwise; the output's ``/ output_scale_factor``
    is left out when the factor is 1 (a division by 1 is exact, and a pass over the tensor)."""
    if args or kwargs:  # diffusers' deprecated ``scale`` argument: its own forward warns about it
        return type(block).forward(block, input_tensor, temb, *args, **kwargs)
    silu = isinstance(block.nonlinearity, nn.SiLU)
    hidden = block.norm1.add_norm_silu(input_tensor, None, silu=silu)
    if not silu:
        hidden = block.nonlinearity(hidden)
    if block.upsample is not None:
        if hidden.shape[0] >= 64:  # diffusers' guard: its NHWC nearest upsampling fails on large batches
            input_tensor = input_tensor.contiguous()
            hidden = hidden.contiguous()
        input_tensor = block.upsample(input_tensor)
        hidden = block.upsample(hidden)
    elif block.downsample is not None:
        input_tensor = block.downsample(input_tensor)
        hidden = block.downsample(hidden)
    fold = block.norm2.fuses(hidden) and elementwise_kernels.available(hidden)
    hidden, conv1_bias = _without_bias(block.conv1, hidden, fold)
    if block.time_emb_proj is not None:
        if not block.skip_time_act:
            temb = block.nonlinearity(temb)
        temb = block.time_emb_proj(temb)[:, :, None, None]
    if temb is not None and temb.numel() != hidden.shape[0] * hidden.shape[1]:
        hidden = hidden + temb  # an embedding broadcast over the batch: added as diffusers does
        temb = None
    if conv1_bias is not None and not block.norm2.fuses(hidden):  # an output layout the kernels do not take
        hidden, conv1_bias = hidden + conv1_bias.view(1, -1, 1, 1), None
    hidden = block.norm2.add_norm_silu(hidden, temb, silu=silu, channel_addend=conv1_bias)
    if not silu:
        hidden = block.nonlinearity(hidden)
    hidden = block.dropout(hidden)
    hidden, conv2_bias = _without_bias(block.conv2, hidden, fold)
    shortcut_bias = None
    if block.conv_shortcut is not None:
        if block.training:
            input_tensor = input_tensor.contiguous()
        input_tensor, shortcut_bias = _without_bias(block.conv_shortcut, input_tensor, fold)
    if conv2_bias is None and shortcut_bias is None:
        output = input_tensor + hidden
    else:
        output = elementwise_kernels.add_with_bias(input_tensor, hidden, conv2_bias, shortcut_bias)
    return output if block.output_scale_factor == 1 else output / block.output_scale_factor


def _fuse_resnet_norms(root: nn.Module) -> int:
    def fusable(block: Any) -> bool:
        return (block.time_embedding_norm == "default" and isinstance(block.norm1, ChannelsLastGroupNorm)
                and isinstance(block.norm2, ChannelsLastGroupNorm))

    return patch_instances([root], "diffusers.models.resnet.ResnetBlock2D", "forward", _resnet_forward,
                           exact=True, where=fusable)


@dataclass(frozen=True)
class ChannelsLastChanges:
    """What :func:`keep_channels_last` changed: GroupNorms swapped, transformer outputs kept, ResNet blocks fused."""

    norms: int
    transformer_outputs: int
    resnets: int


def keep_channels_last(*modules: nn.Module, kernels: bool = True) -> ChannelsLastChanges:
    """Make ``modules`` keep channels-last activations (above). ``kernels``: the GroupNorms use
    :mod:`group_norm_kernels` where they can run, and each ResNet block fuses its norms with their
    neighbours (without, the block's forward stays diffusers')."""
    norms = outputs = resnets = 0
    for module in modules:
        norms += _swap_group_norms(module, kernels)
        outputs += _keep_transformer_outputs(module)
        if kernels:
            resnets += _fuse_resnet_norms(module)
    return ChannelsLastChanges(norms, outputs, resnets)
