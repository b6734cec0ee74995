"""The UNet passes as the sampler calls them: eager, replayed as CUDA graphs, or compiled.

Two ways through a step (reference/zero123plus.md §11): a *write* pass on the noised reference
latents stores every self-attention layer's keys and values, a *read* pass on the latents attends
to them and predicts v, then classifier-free guidance. :meth:`Denoiser.step` does both for one step
(``reference_batch`` 0); otherwise :meth:`Denoiser.write_batch` runs the write passes of several
steps as one batched call and :meth:`Denoiser.read` each step's read pass on its rows of the stored
keys/values. Compiled (``compile``), both passes run under ``torch.compile`` and every write pass
runs batched (one step alone is a batch of one). With ``cuda_graph``, the step, the read pass and
each batched write pass are replayed as CUDA graphs (:mod:`cuda_graph`): launched from Python the
write passes were host-bound (views 2.051 s -> 1.701 s on the H200, same bytes).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from instantmesh_cli.multiview.compiled import CompiledPasses
from instantmesh_cli.multiview.cuda_graph import GraphedPass
from instantmesh_cli.multiview.unet_passes import ReadPass, WritePass, by_layer


def guided(out: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance on a [negative, positive] batch (nothing to do without CFG)."""
    if guidance <= 1:
        return out
    uncond, cond = out.chunk(2)
    return uncond + guidance * (cond - uncond)


class Denoiser:
    """The write and read passes of one UNet whose attention layers share ``store``."""

    def __init__(self, unet: torch.nn.Module, store: Any, *, cuda_graph: bool = False, compile: bool = False,
                 compile_log: Callable[[str], None] | None = None) -> None:
        self.store = store
        self._write_pass = WritePass(unet, store)
        self._read_pass = ReadPass(unet, store)
        self.compiled: CompiledPasses | None = None
        if compile:
            self.compiled = CompiledPasses(self._write_pass, self._read_pass, log=compile_log)
        step: Callable[..., torch.Tensor] = self._step
        read: Callable[..., torch.Tensor] = self._read
        write: Callable[..., tuple] = self._write_pass
        if cuda_graph:
            step, read, write = GraphedPass(step), GraphedPass(read), GraphedPass(write)
        self.graphed = cuda_graph
        # (model_in, reference_in, timestep, embeds, *, guidance) -> guided v: write + read + CFG
        self.step = step
        # (model_in, timestep, embeds, *reference_kv, guidance) -> guided v; reference_kv: every layer's
        # keys and values, in ``store.layers`` order
        self.read = read
        self._writer = write

    def _step(self, model_in: torch.Tensor, reference_in: torch.Tensor, timestep: torch.Tensor,
              embeds: torch.Tensor, *, guidance: float) -> torch.Tensor:
        reference_kv = self._write_pass(reference_in, timestep, embeds)
        return guided(self._read_pass(model_in, timestep, embeds, *reference_kv), guidance)

    def _read(self, model_in: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor,
              *reference_kv: torch.Tensor, guidance: float) -> torch.Tensor:
        read = self._read_pass if self.compiled is None else self.compiled.read
        return guided(read(model_in, timestep, embeds, *reference_kv), guidance)

    def steps_per_write(self, reference_batch: int) -> int:
        """Steps per write pass; compiled, a write pass is always batched (one step is a batch of one)."""
        return reference_batch if self.compiled is None else max(reference_batch, 1)

    def write_batch(self, reference_in: torch.Tensor, timesteps: torch.Tensor,
                    embeds: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """One write pass over several steps' reference latents (per-sample timesteps); the stored K/V by layer."""
        if self.compiled is not None:
            return self.compiled.write(reference_in, timesteps, embeds)
        return by_layer(self.store, self._writer(reference_in, timesteps, embeds))
