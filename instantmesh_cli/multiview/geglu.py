"""The UNet's feed-forward gate (diffusers' ``GEGLU``) as one pass over its projection, where the kernels run.

diffusers' ``GEGLU.forward`` is ``h, gate = proj(x).chunk(2, dim=-1); h * gelu(gate)``: two torch
kernels over strided halves (see :mod:`elementwise_kernels` for what they cost). Here the
projection stays torch's (cuBLAS, its bias fused), and :func:`elementwise_kernels.geglu` does the
rest. Anywhere the kernels cannot run (the CPU build of torch, autograd) diffusers' own forward
runs, unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from instantmesh_cli.multiview import elementwise_kernels
from instantmesh_cli.multiview.instance_patches import patch_instances


def _geglu_forward(module: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if args or kwargs or (torch.is_grad_enabled() and (hidden_states.requires_grad or module.proj.weight.requires_grad)):
        return type(module).forward(module, hidden_states, *args, **kwargs)
    projected = module.proj(hidden_states)
    if not (projected.is_contiguous() and elementwise_kernels.available(projected)):
        h, gate = projected.chunk(2, dim=-1)
        return h * module.gelu(gate)
    return elementwise_kernels.geglu(projected)


def fuse_geglu(*modules: nn.Module) -> int:
    """Give every diffusers ``GEGLU`` in ``modules`` the fused forward (an instance attribute: the class,
    and other instances, keep diffusers'); returns how many."""
    return patch_instances(modules, "diffusers.models.activations.GEGLU", "forward", _geglu_forward, exact=True)
