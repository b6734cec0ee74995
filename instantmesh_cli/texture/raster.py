"""Choosing a rasterizer backend.

Both backends take clip-space positions (B, N, 4) and triangles (F, 3) and return
``rast`` (B, H, W, 4) = (u, v, z/w, triangle_id + 1) with nvdiffrast's pixel
conventions, and interpolate per-vertex attributes perspective-correctly:

- ``nvdiffrast``: CUDA only; its plugin is compiled on first use (CUDA toolkit + ninja).
- ``torch``: pure torch on any device (tests, CPU, machines without a CUDA toolchain).

``auto`` picks nvdiffrast on a CUDA device when its plugin builds or loads, and the
torch backend otherwise, with one warning saying why.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import warnings
from typing import Callable, Protocol

import torch

from instantmesh_cli.errors import DeviceError, UsageError

RASTERIZERS = ("auto", "nvdiffrast", "torch")

log = logging.getLogger(__name__)


class Rasterizer(Protocol):
    name: str
    device: torch.device

    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor: ...

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor: ...


class RasterizerFallbackWarning(UserWarning):
    """nvdiffrast was wanted (auto on CUDA) but could not be used; the torch rasterizer runs instead."""


# One context per CUDA device: creating an nvdiffrast context allocates buffers, and the
# plugin load is only tried once per process (a failure is kept and raised again).
_CACHE: dict[tuple[str, str], object] = {}
_CACHE_LOCK = threading.Lock()
_NVDIFFRAST_ERROR: list[str] = []


def _nvdiffrast(device: torch.device, notice: Callable[[str], None] | None = None):
    key = ("nvdiffrast", str(device))
    with _CACHE_LOCK:  # a preload thread and a job may ask at once: one builds, the other waits
        if key not in _CACHE:
            try:
                from instantmesh_cli.texture.raster_nvdiffrast import NvdiffrastRasterizer

                _CACHE[key] = NvdiffrastRasterizer(device, notice)
            except Exception as exc:  # the plugin build raises many kinds of errors
                _CACHE[key] = exc
        found = _CACHE[key]
    if isinstance(found, Exception):
        raise found
    return found


def preload(device: "torch.device | str", notice: Callable[[str], None] | None = None) -> threading.Thread | None:
    """Load (or, the first time on a machine, build) nvdiffrast's plugin for ``device`` in a background
    thread, so that a process's first texture stage does not wait for it; None off CUDA.

    ``notice(message)`` is told when a build starts. Errors are kept for the first
    :func:`get_rasterizer` call, which reports them as it always does.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    # nvdiffrast imports torch.utils.cpp_extension, which imports setuptools, whose import puts a finder
    # at the front of sys.meta_path and takes it out again. Taken out while another thread's import
    # walks that list, it makes that import skip the path finder: "No module named
    # 'instantmesh_cli.hub.manifest'" in one of eight cold runs on the H200, whose load imports in
    # three threads. So it is imported here, on the caller's thread, before the load's threads start.
    importlib.import_module("torch.utils.cpp_extension")  # (a local `import torch.…` would shadow torch here)

    def load() -> None:
        with contextlib.suppress(Exception):
            _nvdiffrast(device, notice)

    thread = threading.Thread(target=load, name="imesh-nvdiffrast", daemon=True)
    thread.start()
    return thread


def get_rasterizer(kind: str | None = "auto", device: torch.device | str | None = None) -> Rasterizer:
    """A rasterizer for ``device`` (default: CUDA when available, else CPU).

    ``kind``: ``auto`` | ``nvdiffrast`` | ``torch``. Explicit ``nvdiffrast`` fails with a
    :class:`DeviceError` when it cannot run; ``auto`` falls back to torch with a warning.
    """
    from instantmesh_cli.texture.raster_torch import TorchRasterizer

    kind = (kind or "auto").lower()
    if kind not in RASTERIZERS:
        raise UsageError(f"unknown rasterizer {kind!r}; choose one of: {', '.join(RASTERIZERS)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if kind == "torch":
        return TorchRasterizer(device)
    if kind == "nvdiffrast":
        if device.type != "cuda":
            raise DeviceError(f"the nvdiffrast rasterizer needs a CUDA device, not {device}", hint="use --rasterizer torch")
        try:
            return _nvdiffrast(device)
        except Exception as exc:  # the plugin build raises many kinds of errors
            raise DeviceError(f"nvdiffrast cannot run here: {_one_line(exc)}", hint="use --rasterizer torch") from exc
    # auto
    if device.type != "cuda":
        return TorchRasterizer(device)
    if not _NVDIFFRAST_ERROR:
        try:
            return _nvdiffrast(device)
        except Exception as exc:
            _NVDIFFRAST_ERROR.append(_one_line(exc))
            warnings.warn(
                f"nvdiffrast is not usable ({_NVDIFFRAST_ERROR[0]}); using the slower torch rasterizer",
                RasterizerFallbackWarning,
                stacklevel=2,
            )
    return TorchRasterizer(device)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return f"{type(exc).__name__}: {msg}"[:300]
