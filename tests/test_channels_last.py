"""NHWC activations from one convolution to the next: the GroupNorm swap and the transformer outputs."""

import copy

import pytest
import torch
import torch.nn.functional as F

from instantmesh_cli import random_weights as rw
from instantmesh_cli.multiview.channels_last import ChannelsLastGroupNorm, group_norm_channels_last, keep_channels_last


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("groups,affine", [(8, True), (32, True), (4, False)])
def test_group_norm_matches_torch_and_stays_channels_last(groups, affine):
    g = torch.Generator().manual_seed(groups)
    x = _nhwc(torch.randn(2, 64, 12, 10, generator=g) * 3 + 1.5)  # a mean away from 0, as activations have
    weight = torch.randn(64, generator=g) if affine else None
    bias = torch.randn(64, generator=g) if affine else None
    got = group_norm_channels_last(x, groups, weight, bias, 1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    torch.testing.assert_close(got, F.group_norm(x, groups, weight, bias, 1e-5), atol=2e-6, rtol=1e-5)


def test_bfloat16_is_as_close_as_torchs_own_kernel():
    g = torch.Generator().manual_seed(1)
    x = _nhwc(torch.randn(2, 64, 12, 10, generator=g) * 2 + 1).bfloat16()
    weight, bias = torch.randn(64, generator=g).bfloat16(), torch.randn(64, generator=g).bfloat16()
    exact = F.group_norm(x.float(), 8, weight.float(), bias.float(), 1e-5)
    ours = (group_norm_channels_last(x, 8, weight, bias, 1e-5).float() - exact).abs().max()
    torchs = (F.group_norm(x, 8, weight, bias, 1e-5).float() - exact).abs().max()
    assert ours <= 2 * torchs


def test_other_inputs_take_torchs_kernel():
    norm = ChannelsLastGroupNorm(4, 16)
    plain = torch.nn.GroupNorm(4, 16)
    plain.load_state_dict(norm.state_dict())
    for x in (torch.randn(2, 16, 5, 3), torch.randn(2, 16, 7)):  # NCHW, and the VAE attention's (n, c, tokens)
        out = norm(x)
        assert out.is_contiguous()
        torch.testing.assert_close(out, plain(x), atol=0, rtol=0)


def test_a_call_autograd_records_takes_torchs_kernel_and_differentiates():
    norm = ChannelsLastGroupNorm(4, 16)  # parameters that require grad, as a fresh module's do
    x = _nhwc(torch.randn(2, 16, 5, 3)).requires_grad_()
    out = norm(x)
    out.square().sum().backward()
    assert x.grad is not None and norm.weight.grad is not None
    with torch.no_grad():
        fast = norm(x)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, out.detach(), atol=2e-6, rtol=1e-5)


def test_the_unet_computes_the_same_with_its_activations_kept_nhwc():
    unet = rw.build_unet(rw.TINY, seed=3).eval().to(memory_format=torch.channels_last)
    kept = copy.deepcopy(unet)
    before = {k: v.clone() for k, v in kept.state_dict().items()}
    changes = keep_channels_last(kept)
    assert changes.norms == sum(isinstance(m, torch.nn.GroupNorm) for m in unet.modules()) > 0
    assert changes.transformer_outputs == sum(type(m).__name__ == "Transformer2DModel" for m in unet.modules()) > 0
    assert changes.resnets == sum(type(m).__name__ == "ResnetBlock2D" for m in unet.modules()) > 0
    state = kept.state_dict()
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in before)  # same parameters

    layouts = []

    def record(module, args):  # tensors of one pixel or one channel are both layouts at once: not counted
        x = args[0]
        if x.dim() == 4 and not (x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            layouts.append(x.is_contiguous(memory_format=torch.channels_last))

    for m in kept.modules():
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.Conv2d)):
            m.register_forward_pre_hook(record)
    g = torch.Generator().manual_seed(0)
    cfg = rw.TINY.unet
    latents = _nhwc(torch.randn(2, cfg["in_channels"], 16, 12, generator=g))
    text = torch.randn(2, 3, cfg["cross_attention_dim"], generator=g)
    with torch.no_grad():
        want = unet(latents, 500, encoder_hidden_states=text).sample
        got = kept(latents, 500, encoder_hidden_states=text).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert layouts and all(layouts), f"{layouts.count(False)} of {len(layouts)} norm/conv inputs were NCHW"
