"""The UNet's two reference passes under ``torch.compile`` (``--compile``).

Both passes the sampler runs, :class:`~instantmesh_cli.multiview.unet_passes.WritePass` (a few
large calls per image) and :class:`~instantmesh_cli.multiview.unet_passes.ReadPass` (75 calls per
image, replayed as a CUDA graph by the pipeline), are compiled: the same modules the eager path runs.

Each is compiled for fixed shapes on its first call (``dynamic=False``; a new output size or
step batch compiles again). Inductor keeps what it generates (kernels, graphs, autotuning) in
``IMESH_CACHE_DIR/inductor`` (:func:`persist_compilation`), so the first process on a
machine pays the full compilation and later ones mostly re-trace.

Why not ahead of time: AOTInductor packages would skip the re-tracing too. They build and
run on the CPU here, but on the H200 machine's image (torch 2.11.0+cu130) loading any CUDA
package segfaults inside ``AOTIModelPackageLoader`` (every load setting tried, tiny and
full-size UNets), so that path waits for a torch that loads them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from instantmesh_cli.errors import ImeshError
from instantmesh_cli.multiview.unet_passes import ReadPass, WritePass, by_layer

Log = Callable[[str], None]


class CompileError(ImeshError):
    """torch.compile could not compile a pass here (no C++ compiler, no Triton for this GPU...)."""


def persist_compilation() -> None:
    """Keep Inductor's artefacts (FX graphs, Triton kernels, autotuning) in imesh's cache, so only
    the first process on a machine pays the full compilation; later ones read them back.

    Environment, not ``torch._inductor.config``: Inductor reads these when it first compiles,
    and its worker processes inherit them. A value the user set wins; torch's own default
    does not (importing Inductor's config writes that default into the environment).
    """
    from instantmesh_cli.settings import cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # a torch that keeps it elsewhere: leave a set value alone
        torch_default = None
    else:
        torch_default = os.path.abspath(default_cache_dir())
    if current is None or (torch_default is not None and os.path.abspath(current) == torch_default):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor")
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


@dataclass
class CompileStats:
    """The first call of each pass and input signature in this process: (pass, seconds), compilation included."""

    first_calls: list[tuple[str, float]] = field(default_factory=list)


class CompiledPasses:
    """The write and read passes of one UNet, compiled on their first call for each input signature.

    ``write(...)`` and ``read(...)`` take what the eager passes take and compute the same
    thing (up to the rounding of fused kernels).
    """

    def __init__(self, write_pass: WritePass, read_pass: ReadPass, *, log: Log | None = None) -> None:
        persist_compilation()
        self.store = write_pass.store
        self.log = log or (lambda message: None)
        self.stats = CompileStats()
        self._seen: set[tuple] = set()
        self._write = torch.compile(write_pass, dynamic=False)
        self._read = torch.compile(read_pass, dynamic=False)

    def write(self, reference_in: torch.Tensor, timesteps: torch.Tensor, embeds: torch.Tensor) -> dict:
        """The keys/values of every ``attn1`` for a batch of reference latents, by layer name."""
        return by_layer(self.store, self._call("write", self._write, (reference_in, timesteps, embeds)))

    def read(self, model_in: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor,
             *kv: torch.Tensor) -> torch.Tensor:
        """The UNet's output for ``model_in`` attending to the given keys/values (``store.layers`` order)."""
        return self._call("read", self._read, (model_in, timestep, embeds, *kv))

    def _call(self, kind: str, fn: Any, args: tuple[torch.Tensor, ...]) -> Any:
        signature = (kind,) + tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        if signature in self._seen:
            return fn(*args)
        self.log(f"compiling the UNet's {kind} pass for these shapes (the first time on a machine takes about a "
                 f"minute; later processes read Inductor's cache in {os.environ['TORCHINDUCTOR_CACHE_DIR']})")
        start = time.perf_counter()
        try:
            out = fn(*args)
        except (ImeshError, torch.OutOfMemoryError):  # not compiler failures: reported as they are
            raise
        except Exception as exc:  # noqa: BLE001 - dynamo, Inductor and the C++/Triton compilers fail in many ways
            lines = str(exc).strip().splitlines()
            first = lines[0] if lines else type(exc).__name__
            raise CompileError(f"--compile: cannot compile the UNet's {kind} pass here: {first[:300]}",
                               hint="run without --compile; Inductor needs Triton on a GPU, and a C++ "
                                    "compiler and Python's headers on the CPU") from exc
        finally:
            self.store.clear()
        if args[0].device.type == "cuda":
            torch.cuda.synchronize(args[0].device)
        self.stats.first_calls.append((kind, time.perf_counter() - start))
        self._seen.add(signature)
        return out
