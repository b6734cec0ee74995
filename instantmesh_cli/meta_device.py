"""Building modules on the meta device (shapes only) without running their initialisers.

Every model here is built on the meta device and then filled from its weights file, strictly, so
a build's random initialisation computes nothing anyway. It still costs something: on meta
tensors torch runs ``normal_`` and ``uniform_`` through its Python reference implementations,
and the first such call imports ``torch._dynamo`` (1.5-1.9 s on the 2-core VM; the CLIP vision
tower's embeddings were the first caller of a cold start, the reconstruction model's layers the
next). Inside :func:`on_meta_device` the initialisers of meta tensors return at once.

A ``TorchFunctionMode`` is per thread, so a build here skips nothing in any other thread.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

# The in-place random fills nn.init's functions end in (the functions themselves are caught by module).
_FILLS = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_})
# Random factories (``nn.Parameter(torch.randn(...) * scale)``): on the meta device, an empty tensor is the same.
_RANDOM_FACTORIES = frozenset({torch.randn, torch.rand})


def _is_initialiser(func: Any) -> bool:
    return func in _FILLS or getattr(func, "__module__", None) == "torch.nn.init"


class _SkipMetaInit(TorchFunctionMode):
    """Inside ``torch.device("meta")`` (this mode above it): initialisers of meta tensors return the tensor,
    random factories without another device return an empty (meta) tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RANDOM_FACTORIES and torch.device(kwargs.get("device") or "meta").type == "meta":
            return torch.empty(*args, **{k: v for k, v in kwargs.items() if k != "generator"})
        first = args[0] if args else kwargs.get("tensor")
        if isinstance(first, torch.Tensor) and first.is_meta and _is_initialiser(func):
            return first
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta_device() -> Iterator[None]:
    """``with torch.device("meta")``, with the initialisers of meta tensors left out (above)."""
    with torch.device("meta"), _SkipMetaInit():
        yield
