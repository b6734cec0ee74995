"""Attention's kernel chosen by size (instantmesh_cli/attention.py): which calls keep cuDNN, what the
CPU does, the UNet's cross-attention processor against diffusers', and the first-use replay steering
its attention calls the same way. The kernels actually run are checked on a CUDA GPU."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from instantmesh_cli import attention, first_use


def _qk(batch, heads, q_len, k_len, width=64, device="meta"):
    return (torch.empty(batch, heads, q_len, width, device=device), torch.empty(batch, heads, k_len, width, device=device))


# The Zero123++ UNet's attention calls in one job (H200 trace): (batch, heads, queries, keys).
LEVEL0_READ = (2, 5, 9600, 13696)
LEVEL0_WRITE = (10, 5, 4096, 4096)
LEVEL1_READ = (2, 10, 2400, 3424)
SMALLER = [(2, 5, 9600, 77), (2, 10, 2400, 77), (1, 16, 3072, 2406), (2, 20, 600, 856), (10, 10, 1024, 1024),
           (10, 20, 256, 256), (2, 20, 150, 214), (10, 20, 64, 77), (1, 16, 3072, 3072), (6, 12, 401, 401)]


def test_only_the_unets_largest_self_attention_calls_keep_cudnn():
    assert attention.attention_flop(*_qk(*LEVEL0_READ)) == 4 * 2 * 5 * 9600 * 13696 * 64
    for shape in (LEVEL0_READ, LEVEL0_WRITE, LEVEL1_READ):
        assert attention.uses_cudnn(*_qk(*shape)), shape
    for shape in SMALLER:
        assert not attention.uses_cudnn(*_qk(*shape)), shape


def test_cpu_calls_are_left_to_torch_and_give_the_same_bits():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 33, 16, generator=g) for _ in range(3))
    assert isinstance(attention.kernel_choice(q, k), contextlib.nullcontext)
    assert torch.equal(attention.attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    assert torch.equal(attention.attention(q, k, v, scale=0.3), F.scaled_dot_product_attention(q, k, v, scale=0.3))


def test_the_cross_attention_processor_equals_diffusers():
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from instantmesh_cli.multiview.reference_attention import CrossAttnProcessor

    torch.manual_seed(0)
    attn = Attention(query_dim=32, cross_attention_dim=24, heads=4, dim_head=8, bias=False).eval()
    x, context = torch.randn(2, 30, 32), torch.randn(2, 7, 24)
    with torch.no_grad():
        assert torch.equal(CrossAttnProcessor()(attn, x, context), AttnProcessor2_0()(attn, x, context))
        with pytest.raises(ValueError, match="no mask"):
            CrossAttnProcessor()(attn, x, context, attention_mask=torch.ones(2, 30, 7))


def test_an_unsupported_attention_layer_is_refused_by_name():
    from diffusers.models.attention_processor import Attention

    from instantmesh_cli.multiview.reference_attention import install_reference_attention

    layers = torch.nn.ModuleDict({"attn1": Attention(query_dim=32, heads=4, dim_head=8),
                                  "attn2": Attention(query_dim=32, heads=4, dim_head=8, residual_connection=True)})
    with pytest.raises(ValueError, match="attn2: .*residual_connection"):
        install_reference_attention(layers)


def test_the_first_use_replay_steers_its_attention_calls_like_the_job(monkeypatch, tmp_path):
    seen = []

    @contextlib.contextmanager
    def spy(query, key):
        seen.append((tuple(query.shape), tuple(key.shape)))
        yield

    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 2, 5, 8, generator=g), torch.randn(1, 2, 7, 8, generator=g), torch.randn(1, 2, 7, 8, generator=g)
    path = tmp_path / "m.json"
    with first_use.recording(path), torch.inference_mode():
        F.scaled_dot_product_attention(q, k, v)
        torch.mm(q[0, 0], q[0, 0].T)
    calls = first_use.read_manifest(path)
    assert [c["op"] for c in calls] == ["aten::scaled_dot_product_attention.default", "aten::mm.default"]
    monkeypatch.setattr(attention, "kernel_choice", spy)
    done = first_use.replay(calls, torch.device("cpu"))
    assert done.failed == 0
    assert seen == [((1, 2, 5, 8), (1, 2, 7, 8))]  # the attention call, and only it


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the GPU machine)")


def _kernels(fn):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return " ".join(e.key for e in prof.key_averages()).lower()


@needs_cuda
def test_on_the_gpu_small_calls_run_flash_attention_and_large_ones_keep_torchs_choice():
    small_q, small_k = _qk(10, 10, 1024, 1024, device="cuda")
    small_q, small_k = small_q.half().normal_(), small_k.half().normal_()
    small = _kernels(lambda: attention.attention(small_q, small_k, small_k))
    assert "flash" in small and "cudnn" not in small, small
    big_q, big_k = _qk(*LEVEL0_READ, device="cuda")
    big_q, big_k = big_q.half().normal_(), big_k.half().normal_()
    with torch.inference_mode():
        steered = attention.attention(big_q, big_k, big_k)
        default = F.scaled_dot_product_attention(big_q, big_k, big_k)
    assert torch.equal(steered, default)  # torch's own choice, untouched
    small_ref = F.scaled_dot_product_attention(small_q.float(), small_k.float(), small_k.float())
    assert (attention.attention(small_q, small_k, small_k).float() - small_ref).abs().max() < 2e-3
