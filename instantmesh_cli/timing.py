"""One stage timer for every stage, sub-stage and driver.

Seconds are taken with the device synchronised before and after, so the stages of a
run add up to its wall time; with ``memory=True`` the timer also records the peak
device memory of each stage (``torch.cuda.max_memory_allocated``, resident weights
included), which is what ``imesh bench`` reports.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Iterator, MutableMapping

from instantmesh_cli.device import synchronize

if TYPE_CHECKING:
    import torch


class StageTimer:
    """``with timer("multiview", job.timings): ...`` adds the stage's seconds to ``job.timings``."""

    def __init__(self, device: "torch.device | None" = None, *, memory: bool = False):
        self.device = device
        self.memory = bool(memory) and device is not None and device.type == "cuda"
        self.peaks_gib: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, into: MutableMapping[str, float]) -> Iterator[None]:
        synchronize(self.device)
        if self.memory:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            into[name] = into.get(name, 0.0) + time.perf_counter() - start
            if self.memory:
                import torch

                peak = torch.cuda.max_memory_allocated(self.device) / 2**30
                self.peaks_gib[name] = max(self.peaks_gib.get(name, 0.0), peak)
