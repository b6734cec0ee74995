"""The Triton GroupNorm (+ added term, + SiLU) kernels: run by Triton's CPU interpreter where Triton is
installed, and compiled on CUDA; the fallback everywhere else."""

import copy
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from instantmesh_cli import random_weights as rw
from instantmesh_cli.multiview import group_norm_kernels
from instantmesh_cli.multiview.channels_last import ChannelsLastGroupNorm, keep_channels_last

from triton_check import on_cuda, run_check, tiny_unet_outputs


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _reference(x, groups, weight, bias, addend, silu):
    if addend is not None:
        x = x + addend.reshape(x.shape[0], x.shape[1], 1, 1)
    y = F.group_norm(x, groups, weight, bias, 1e-5)
    return F.silu(y) if silu else y


def _run_check(name: str, *args) -> None:
    run_check(sys.modules[__name__], name, *args)


def check_against_torch(device, shape, groups, affine, added, silu):
    g = torch.Generator(device=device).manual_seed(sum(shape))
    n, c = shape[:2]
    x = _nhwc(torch.randn(shape, generator=g, device=device) * 3 + 5)
    weight = torch.randn(c, generator=g, device=device) if affine else None
    bias = torch.randn(c, generator=g, device=device) if affine else None
    addend = torch.randn(n, c, 1, 1, generator=g, device=device) * 2 if added else None
    assert group_norm_kernels.available(x)
    got = group_norm_kernels.group_norm_nhwc(x, groups, weight, bias, 1e-5, addend=addend, silu=silu)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == x.dtype
    want = _reference(x.double(), groups, *(t.double() if t is not None else None for t in (weight, bias, addend)), silu)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)
    again = group_norm_kernels.group_norm_nhwc(x, groups, weight, bias, 1e-5, addend=addend, silu=silu)
    assert torch.equal(got, again)  # a fixed order of summation: bit for bit from run to run


def check_large_mean(device):
    # Mean 1000, spread 0.5: float32 sums of x and x^2 would lose the variance (x^2 ~ 1e6 and its
    # ulp ~ 0.06 against a variance of 0.25); sums shifted by a value of the channel keep it.
    g = torch.Generator(device=device).manual_seed(7)
    x = _nhwc(torch.randn(1, 64, 40, 30, generator=g, device=device) * 0.5 + 1000)
    got = group_norm_kernels.group_norm_nhwc(x, 8, None, None, 1e-5)
    want = F.group_norm(x.double(), 8, None, None, 1e-5)
    torch.testing.assert_close(got.double(), want, atol=1e-3, rtol=0)


def check_fused_unet(device):
    unet = rw.build_unet(rw.TINY, seed=5).eval().to(device, memory_format=torch.channels_last)
    fused = copy.deepcopy(unet)
    changes = keep_channels_last(fused)
    assert changes.resnets == sum(type(m).__name__ == "ResnetBlock2D" for m in unet.modules()) > 0
    calls = []
    original = group_norm_kernels.group_norm_nhwc

    def counting(*args, **kwargs):
        calls.append(kwargs.get("silu", False))
        return original(*args, **kwargs)

    group_norm_kernels.group_norm_nhwc = counting
    try:
        want, got = tiny_unet_outputs(unet, fused, device)
    finally:
        group_norm_kernels.group_norm_nhwc = original
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert calls.count(True) == 2 * changes.resnets  # every ResNet norm ran fused with its SiLU


@pytest.mark.parametrize(
    "shape,groups,affine,added,silu",
    [
        ((2, 320, 12, 10), 32, True, True, True),  # 10 channels a group (not a power of two), as the UNet's level 0
        ((1, 128, 9, 7), 32, False, False, False),  # no weight or bias, 4 channels a group
        ((3, 192, 70, 3), 4, True, False, True),  # 210 rows: several splits and a partial last block
        ((2, 96, 5, 5), 32, True, True, False),  # channels not a multiple of the 64-channel block
    ],
)
def test_kernels_match_torch(shape, groups, affine, added, silu):
    _run_check("check_against_torch", shape, groups, affine, added, silu)


def test_a_large_mean_does_not_cancel_the_variance():
    _run_check("check_large_mean")


def test_the_unet_with_fused_resnet_blocks_computes_what_diffusers_does():
    _run_check("check_fused_unet")


def test_without_kernels_the_fused_call_is_the_plain_sequence(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    g = torch.Generator().manual_seed(2)
    norm = ChannelsLastGroupNorm(8, 64).eval()
    torch.nn.init.normal_(norm.weight, generator=g)
    torch.nn.init.normal_(norm.bias, generator=g)
    x = _nhwc(torch.randn(2, 64, 6, 5, generator=g))
    addend = torch.randn(2, 64, 1, 1, generator=g)
    assert not group_norm_kernels.available(x)  # a CPU tensor: no kernels without the interpreter
    with torch.no_grad():
        got = norm.add_norm_silu(x, addend, silu=True)
        plain = norm.add_norm_silu(x, None, silu=False)
    torch.testing.assert_close(got, F.silu(F.group_norm(x + addend, 8, norm.weight, norm.bias, 1e-5)),
                               atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(plain, F.group_norm(x, 8, norm.weight, norm.bias, 1e-5), atol=2e-6, rtol=1e-5)


def test_kernels_are_off_for_cpu_tensors_and_other_layouts(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not group_norm_kernels.available(_nhwc(torch.randn(1, 64, 4, 4)))
    assert not group_norm_kernels.available(torch.randn(1, 64, 4, 4))  # NCHW
    assert not group_norm_kernels.available(torch.randn(1, 64, 16))  # 3-D, as the VAE attention's norm


@pytest.mark.skipif(not on_cuda, reason="needs CUDA and Triton")
def test_on_cuda_fp16_is_as_close_as_torchs_own_kernels():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = _nhwc(torch.randn(2, 320, 120, 80, device="cuda", generator=g) * 2 + 0.5).half()  # the UNet's level 0
    weight = torch.randn(320, device="cuda", generator=g).half()
    bias = torch.randn(320, device="cuda", generator=g).half()
    addend = torch.randn(2, 320, 1, 1, device="cuda", generator=g).half()
    exact = _reference(x.double(), 32, weight.double(), bias.double(), addend.double(), True)
    ours = group_norm_kernels.group_norm_nhwc(x, 32, weight, bias, 1e-5, addend=addend, silu=True)
    torchs = _reference(x, 32, weight, bias, addend, True)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert (ours.double() - exact).abs().max() <= (torchs.double() - exact).abs().max()


def test_triton_keeps_its_kernels_in_imeshs_cache_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    group_norm_kernels.keep_kernels_in_cache()
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "triton")
    monkeypatch.setenv("TRITON_CACHE_DIR", "/elsewhere")
    group_norm_kernels.keep_kernels_in_cache()
    assert os.environ["TRITON_CACHE_DIR"] == "/elsewhere"
