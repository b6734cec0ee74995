"""The UNet's two reference passes as modules with plain tensor inputs and outputs (see :mod:`reference_attention`).

- :class:`WritePass`: noised reference latents of one or more steps (per-sample timesteps) →
  every ``attn1``'s keys and values, flat, in ``store.layers`` order;
- :class:`ReadPass`: the latents, one timestep, the prompt embeddings and those keys/values →
  the UNet's output (CFG is left to the caller).

The pipeline runs them eagerly (or replayed as a CUDA graph), and :mod:`compiled` compiles these
same modules, so both paths run one definition of each pass.
"""

from __future__ import annotations

import torch

from instantmesh_cli.multiview.reference_attention import OFF, READ, WRITE, ReferenceStore


def by_layer(store: ReferenceStore, flat: tuple[torch.Tensor, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(k0, v0, k1, v1, ...) in ``store.layers`` order → {layer name: (keys, values)}."""
    return {name: (flat[2 * n], flat[2 * n + 1]) for n, name in enumerate(store.layers)}


class WritePass(torch.nn.Module):
    """``(reference latents, per-sample timesteps, embeds) → (k0, v0, k1, v1, ...)``."""

    def __init__(self, unet: torch.nn.Module, store: ReferenceStore) -> None:
        super().__init__()
        self.unet = unet
        self.store = store

    def forward(self, reference_in: torch.Tensor, timesteps: torch.Tensor, embeds: torch.Tensor) -> tuple:
        store = self.store
        store.kv = {}
        store.mode = WRITE
        self.unet(reference_in, timesteps, encoder_hidden_states=embeds, return_dict=False)
        store.mode = OFF
        bank, store.kv = store.kv, {}
        return tuple(t for name in store.layers for t in bank[name])


class ReadPass(torch.nn.Module):
    """``(latents, timestep, embeds, k0, v0, k1, v1, ...) → UNet output``."""

    def __init__(self, unet: torch.nn.Module, store: ReferenceStore) -> None:
        super().__init__()
        self.unet = unet
        self.store = store

    def forward(self, model_in: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor, *kv: torch.Tensor):
        store = self.store
        store.kv = by_layer(store, kv)
        store.mode = READ
        out = self.unet(model_in, timestep, encoder_hidden_states=embeds, return_dict=False)[0]
        store.mode = OFF
        store.kv = {}
        return out
