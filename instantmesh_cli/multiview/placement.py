"""Where the Zero123++ parts run: resident on the compute device, or (low-VRAM mode) on the CPU, each moved
onto the device only while it is in use."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class Placement:
    def __init__(self, device: torch.device, low_vram: bool) -> None:
        self.device = device
        self.low_vram = low_vram

    @contextlib.contextmanager
    def use(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Use ``module`` on the compute device; in low-VRAM mode move it there and back."""
        if not self.low_vram:
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")
