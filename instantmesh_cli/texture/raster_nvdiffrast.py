"""nvdiffrast's CUDA rasterizer behind the same interface as :class:`TorchRasterizer`.

nvdiffrast (the ``diffrp-nvdiffrast`` wheel) compiles its CUDA plugin with
``torch.utils.cpp_extension`` on first use and then calls
``importlib.import_module(plugin_name)``. From torch 2.11 on, the extension loader
no longer registers the loaded module in ``sys.modules``, so that import fails
although the build succeeded (reference/deps.md, "nvdiffrast with torch >= 2.11").
:func:`load_plugin` wraps the two loader functions nvdiffrast calls so that the
module they return is registered under its own name — for a fresh build
(``load``) and for a cached one (``_import_module_from_library``) alike.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from typing import Any, Callable, Iterator

import torch

_LOCK = threading.Lock()


BUILD_NOTICE = "building nvdiffrast's CUDA rasterizer for this machine (once; about half a minute)"


@contextlib.contextmanager
def _register_loaded_modules(on_build: Callable[[], None] | None = None) -> Iterator[None]:
    """Within the block, modules returned by torch's extension loaders land in ``sys.modules``;
    ``on_build()`` is called when a build starts (nvdiffrast calls ``load`` only when no build is cached)."""
    import torch.utils.cpp_extension as ext

    originals = {name: getattr(ext, name) for name in ("load", "_import_module_from_library") if hasattr(ext, name)}

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any):
            if on_build is not None and fn is originals.get("load"):
                on_build()
            module = fn(*args, **kwargs)
            name = getattr(module, "__name__", None)
            if name and name not in sys.modules:
                sys.modules[name] = module
            return module

        return inner

    for name, fn in originals.items():
        setattr(ext, name, wrap(fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(ext, name, fn)


def load_plugin(notice: Callable[[str], None] | None = None):
    """Build (first use) or load (cached) nvdiffrast's CUDA plugin; returns the ``nvdiffrast.torch`` module.

    ``notice(message)`` is told when a build starts. Raises whatever the build raises (no CUDA
    toolkit, no compiler...); the caller turns that into a fallback or a clear error.
    """
    import nvdiffrast.torch as dr
    from nvdiffrast.torch import ops

    on_build = None if notice is None else (lambda: notice(BUILD_NOTICE))
    with _LOCK, _register_loaded_modules(on_build):
        ops._get_plugin(gl=False)
    return dr


class NvdiffrastRasterizer:
    """``rasterize`` / ``interpolate`` / ``antialias`` on a CUDA device through nvdiffrast."""

    name = "nvdiffrast"

    def __init__(self, device: torch.device | str | None = None, notice: Callable[[str], None] | None = None):
        device = torch.device(device) if device is not None else torch.device("cuda")
        if device.type != "cuda":
            raise ValueError(f"nvdiffrast needs a CUDA device, got {device}")
        self.device = device
        self.dr = load_plugin(notice)
        self.ctx = self.dr.RasterizeCudaContext(device=device)

    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """pos (B, N, 4) clip coordinates, tri (F, 3) → rast (B, H, W, 4) = (u, v, z/w, triangle_id + 1)."""
        pos = pos.to(self.device, torch.float32).contiguous()
        tri = tri.to(self.device, torch.int32).contiguous()
        h, w = int(resolution[0]), int(resolution[1])
        if tri.shape[0] == 0:
            return torch.zeros(pos.shape[0], h, w, 4, device=self.device)
        rast, _ = self.dr.rasterize(self.ctx, pos, tri, resolution=[h, w], grad_db=False)
        return rast

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
        """attr (N, C) or (1|B, N, C) → (B, H, W, C); differentiable with respect to ``attr``."""
        attr = attr.to(self.device, torch.float32).contiguous()
        if attr.ndim == 3 and attr.shape[0] == 1 and rast.shape[0] > 1:
            attr = attr[0]  # nvdiffrast broadcasts a 2-D attribute tensor over the batch
        out, _ = self.dr.interpolate(attr, rast.contiguous(), tri.to(self.device, torch.int32).contiguous())
        return out

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
        """nvdiffrast's analytic silhouette antialiasing of a rendered (B, H, W, C) image."""
        return self.dr.antialias(
            color.contiguous(), rast.contiguous(), pos.to(self.device, torch.float32).contiguous(),
            tri.to(self.device, torch.int32).contiguous(),
        )
