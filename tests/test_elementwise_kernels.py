"""The GEGLU and residual-plus-bias Triton kernels, and the UNet with every fusion against diffusers: in Triton's
CPU interpreter (a fresh process) where Triton is installed, compiled on CUDA; the fallbacks everywhere."""

import copy
import sys

import pytest
import torch
import torch.nn.functional as F

from instantmesh_cli import random_weights as rw
from instantmesh_cli.multiview import elementwise_kernels
from instantmesh_cli.multiview.channels_last import keep_channels_last
from instantmesh_cli.multiview.geglu import fuse_geglu

from triton_check import has_triton, run_check, tiny_unet_outputs


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _run_check(name: str, *args) -> None:
    run_check(sys.modules[__name__], name, *args)


def check_geglu(device, shape, dtype):
    g = torch.Generator(device=device).manual_seed(sum(shape))
    x = (torch.randn(shape, generator=g, device=device) * 3).to(getattr(torch, dtype))
    assert elementwise_kernels.available(x)
    got = elementwise_kernels.geglu(x)
    assert got.shape == (*shape[:-1], shape[-1] // 2) and got.dtype == x.dtype
    h, gate = x.double().chunk(2, dim=-1)
    want = h * F.gelu(gate)
    tol = 1e-6 if dtype == "float32" else 4e-3  # float16: one rounding of the result
    torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)


def check_add_with_bias(device, shape, biases):
    g = torch.Generator(device=device).manual_seed(sum(shape) + biases)
    a, b = (_nhwc(torch.randn(shape, generator=g, device=device)) for _ in range(2))
    extra = [torch.randn(shape[1], generator=g, device=device) for _ in range(biases)]
    args = (extra + [None, None])[:2]
    got = elementwise_kernels.add_with_bias(a, b, *args)
    assert got.is_contiguous(memory_format=torch.channels_last)
    want = a.double() + b.double() + sum((e.double().view(1, -1, 1, 1) for e in extra), torch.zeros(()))
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-6)


def check_fused_unet(device):
    """Every fusion at once (the ResNet norms and their folded biases, GEGLU) against diffusers' own UNet."""
    unet = rw.build_unet(rw.TINY, seed=5).eval().to(device, memory_format=torch.channels_last)
    fused = copy.deepcopy(unet)
    changes = keep_channels_last(fused)
    gates = fuse_geglu(fused)
    assert gates == sum(type(m).__name__ == "GEGLU" for m in unet.modules()) > 0
    calls = {"geglu": 0, "add_with_bias": 0}
    originals = {name: getattr(elementwise_kernels, name) for name in calls}

    def counted(name):
        def run(*args, **kwargs):
            calls[name] += 1
            return originals[name](*args, **kwargs)
        return run

    for name in calls:
        setattr(elementwise_kernels, name, counted(name))
    try:
        want, got = tiny_unet_outputs(unet, fused, device)
    finally:
        for name, fn in originals.items():
            setattr(elementwise_kernels, name, fn)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert calls["geglu"] == gates  # every gate ran fused
    assert calls["add_with_bias"] == changes.resnets  # every ResNet block's sum took its convolutions' biases


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((2, 37, 2 * 160), "float32"),  # rows and width not multiples of the blocks
        ((300, 2 * 1280), "float32"),  # the UNet's level-0 width, two blocks of rows and more
        ((2, 41, 2 * 96), "float16"),
    ],
)
def test_geglu_matches_torch(shape, dtype):
    _run_check("check_geglu", shape, dtype)


@pytest.mark.parametrize("shape,biases", [((2, 200, 5, 7), 2), ((1, 64, 9, 4), 1), ((3, 96, 3, 3), 0)])
def test_add_with_bias_matches_torch(shape, biases):
    _run_check("check_add_with_bias", shape, biases)


def test_the_unet_with_every_fusion_computes_what_diffusers_does():
    _run_check("check_fused_unet")


def test_without_kernels_the_fused_modules_are_diffusers_bit_for_bit(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    unet = rw.build_unet(rw.TINY, seed=3).eval().to(memory_format=torch.channels_last)
    fused = copy.deepcopy(unet)
    keep_channels_last(fused)
    assert fuse_geglu(fused) > 0
    g = torch.Generator().manual_seed(1)
    cfg = rw.TINY.unet
    latents = _nhwc(torch.randn(2, cfg["in_channels"], 16, 12, generator=g))
    text = torch.randn(2, 3, cfg["cross_attention_dim"], generator=g)
    assert not elementwise_kernels.available(latents)  # a CPU tensor: no kernels without the interpreter
    with torch.no_grad():
        plain = copy.deepcopy(unet)
        keep_channels_last(plain)  # the same norms, without the gates: only GEGLU's forward differs
        assert torch.equal(fused(latents, 500, encoder_hidden_states=text).sample,
                           plain(latents, 500, encoder_hidden_states=text).sample)


def test_add_with_bias_takes_other_layouts_through_torch():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 8, 3, 3, generator=g), torch.randn(2, 8, 3, 3, generator=g)  # NCHW: no kernel
    bias = torch.randn(8, generator=g)
    assert torch.equal(elementwise_kernels.add_with_bias(a, b, bias), a + b + bias.view(1, -1, 1, 1))
    assert torch.equal(elementwise_kernels.add_with_bias(a, b, None), a + b)


def test_geglu_refuses_a_strided_projection():
    if not has_triton:
        pytest.skip("Triton is not installed")
    x = torch.randn(4, 10)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        elementwise_kernels.geglu(x)
