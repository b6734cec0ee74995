"""Replacing a method of diffusers' modules instance by instance, the way our fused forwards go in.

The replacement becomes an instance attribute (``functools.partial(replacement, instance)``), so
the class, and every instance left out, keep diffusers' own code; a diffusers without the class,
or whose class no longer has the method, is left as it is.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Iterable

from torch import nn


def patch_instances(
    roots: Iterable[nn.Module],
    class_path: str,
    method: str,
    replacement: Callable[..., Any],
    *,
    exact: bool = False,
    where: Callable[[nn.Module], bool] = lambda module: True,
) -> int:
    """Give each instance of ``class_path`` ("package.module.Class") among ``roots``' modules ``replacement``
    (called with the instance first) as its ``method``: only instances of exactly that class when ``exact``,
    and only those ``where`` accepts. Returns how many."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return 0
    if not hasattr(cls, method):
        return 0
    count = 0
    for root in roots:
        for module in root.modules():
            if (type(module) is cls if exact else isinstance(module, cls)) and where(module):
                setattr(module, method, functools.partial(replacement, module))
                count += 1
    return count
