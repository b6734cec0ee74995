"""Zero123++ "reference attention": the condition image steers every self-attention layer.

How the released model works (reference/zero123plus.md §2):

- every step, the noised condition latent goes through the UNet once (the *write*
  pass). Each self-attention layer (``attn1``; 16 of them in the SD2 UNet) keeps
  the tokens it saw: its LayerNorm'd input;
- then the denoising latent goes through the UNet (the *read* pass). Each ``attn1``
  attends from its own tokens (queries) to ``[own tokens ; reference tokens]``
  (keys/values), both projected with that layer's own ``to_k`` / ``to_v``. No mask,
  default 1/sqrt(d) scale. Cross-attention (``attn2``) is untouched.

Here the write pass stores the *projected* keys and values of the reference
tokens instead of the tokens themselves: ``to_k([own; ref]) == [to_k(own); to_k(ref)]``,
and the write pass computes ``to_k(ref)`` / ``to_v(ref)`` anyway for its own
self-attention, so the read pass only projects its own tokens. Same result,
less work.

The processors share one :class:`ReferenceStore`; the caller sets ``store.mode``
before each UNet pass. Nothing here syncs with the device, so both passes can be
captured in one CUDA graph or compiled together.

The write pass need not run once per step: its input does not depend on the
sampling path, so the pipeline can run the write passes of several steps as one
batched UNet call (per-sample timesteps) and hand each step's read pass its rows
of the stored keys/values (``store.kv`` may be filled by the caller).
"""

from __future__ import annotations

from typing import Any

import torch

from instantmesh_cli.attention import attention

OFF, WRITE, READ = "off", "write", "read"


class ReferenceStore:
    """State shared by the reference processors of one UNet.

    ``mode`` is ``"write"`` (keep keys/values), ``"read"`` (attend to the kept ones)
    or ``"off"`` (plain self-attention). ``kv`` maps a layer name to its kept
    (keys, values), (batch, tokens, width) each. ``trace``, when set to a list,
    receives one ``(layer, mode, batch, own_tokens, reference_tokens)`` tuple per
    call, for tests.
    """

    def __init__(self) -> None:
        self.mode: str = OFF
        self.kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.trace: list[tuple[str, str, int, int, int]] | None = None
        self.layers: tuple[str, ...] = ()

    def clear(self) -> None:
        self.mode = OFF
        self.kv.clear()


class ReferenceAttnProcessor:
    """Self-attention processor with the write/read behaviour described above.

    A plain object (not an ``nn.Module``) so it adds nothing to the UNet's state dict.
    It declares no extra call arguments: everything it needs is on the store, so
    diffusers' filtering of ``cross_attention_kwargs`` never gets in the way.
    """

    def __init__(self, name: str, store: ReferenceStore) -> None:
        self.name = name
        self.store = store

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(f"{self.name}: reference attention expects plain self-attention (no context, no mask)")
        batch, own_len, _ = hidden_states.shape
        store = self.store
        if getattr(attn, "fused_projections", False):
            # One GEMM for q, k and v (see install_reference_attention(fuse_qkv=True)).
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query = attn.to_q(hidden_states)
            key = attn.to_k(hidden_states)
            value = attn.to_v(hidden_states)
        ref_len = 0
        if store.mode == WRITE:
            # Contiguous: with fused projections key/value are views of the q/k/v
            # product, and keeping a view would keep the queries alive too.
            store.kv[self.name] = (key.contiguous(), value.contiguous())
        elif store.mode == READ:
            ref_key, ref_value = store.kv.pop(self.name)
            ref_len = ref_key.shape[1]
            key = torch.cat([key, ref_key], dim=1)
            value = torch.cat([value, ref_value], dim=1)
        if store.trace is not None:
            store.trace.append((self.name, store.mode, batch, own_len, ref_len))

        return _attend(attn, query, key, value)


class CrossAttnProcessor:
    """The UNet's cross-attention (``attn2``, to the prompt embedding) as diffusers' ``AttnProcessor2_0``
    computes it for these layers, with the kernel chosen by :func:`instantmesh_cli.attention.attention`."""

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError("cross-attention expects (batch, tokens, width) inputs and no mask")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        return _attend(attn, attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context))


def _attend(attn: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of projected (batch, tokens, width) queries, keys and values, then ``to_out``."""
    batch, own_len, _ = query.shape
    heads = attn.heads
    head_dim = query.shape[-1] // heads
    query = query.view(batch, -1, heads, head_dim).transpose(1, 2)
    key = key.view(batch, -1, heads, head_dim).transpose(1, 2)
    value = value.view(batch, -1, heads, head_dim).transpose(1, 2)
    out = attention(query, key, value)
    out = out.transpose(1, 2).reshape(batch, own_len, heads * head_dim)
    out = attn.to_out[0](out)
    return attn.to_out[1](out)  # dropout (identity in eval)


def _check_plain_attention(name: str, attn: Any) -> None:
    """The processors implement only what the SD2 UNet's attention layers use; refuse anything else."""
    unsupported = [
        what
        for what, present in (
            ("norm_cross", getattr(attn, "norm_cross", None) is not None),
            ("spatial_norm", getattr(attn, "spatial_norm", None) is not None),
            ("group_norm", getattr(attn, "group_norm", None) is not None),
            ("norm_q/norm_k", getattr(attn, "norm_q", None) is not None or getattr(attn, "norm_k", None) is not None),
            ("residual_connection", bool(getattr(attn, "residual_connection", False))),
            ("rescale_output_factor", getattr(attn, "rescale_output_factor", 1.0) != 1.0),
            ("added_kv_proj", getattr(attn, "add_k_proj", None) is not None),
        )
        if present
    ]
    if unsupported:
        raise ValueError(f"{name}: imesh's attention processors do not support {', '.join(unsupported)}")


def install_reference_attention(unet: torch.nn.Module, *, fuse_qkv: bool = False) -> ReferenceStore:
    """Put reference processors on every ``attn1`` of ``unet`` and :class:`CrossAttnProcessor` on the others.

    ``fuse_qkv`` concatenates each ``attn1``'s q/k/v weights into one projection
    (diffusers' ``fuse_projections``): one larger GEMM instead of three, same result
    up to rounding. Do it after the weights are loaded; it adds ``to_qkv`` copies
    (about 75 MB in fp16 for the SD2 UNet). Returns the store that drives the
    processors. Installing twice replaces the first store.
    """
    from diffusers.models.attention_processor import Attention

    store = ReferenceStore()
    names = []
    for name, module in unet.named_modules():
        if not isinstance(module, Attention):
            continue
        _check_plain_attention(name, module)
        if name.endswith("attn1"):
            if fuse_qkv and not getattr(module, "fused_projections", False):
                with torch.no_grad():
                    module.fuse_projections()
            module.set_processor(ReferenceAttnProcessor(name, store))
            names.append(name)
        else:
            module.set_processor(CrossAttnProcessor())
    if not names:
        raise ValueError("the UNet has no self-attention (attn1) layers for reference attention")
    store.layers = tuple(names)
    return store
