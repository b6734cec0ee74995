"""Running a kernel check where it can run: compiled on CUDA in this process, else in Triton's CPU interpreter in
a fresh process (the interpreter patches Triton's language classes for good, so compiled kernels of the same
process would not build any more), else skipped (the CPU build of torch ships no Triton)."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import torch

has_triton = importlib.util.find_spec("triton") is not None
on_cuda = has_triton and torch.cuda.is_available()


def run_check(module: ModuleType, name: str, *args) -> None:
    """``module.name(device, *args)`` as above; ``args`` must survive JSON."""
    if on_cuda:
        getattr(module, name)("cuda", *args)
        return
    if not has_triton:
        pytest.skip("Triton is not installed (the CPU build of torch ships none)")
    code = ("import importlib, json, sys; sys.path.insert(0, sys.argv[1]); "
            "getattr(importlib.import_module(sys.argv[2]), sys.argv[3])('cpu', *json.loads(sys.argv[4]))")
    folder = str(Path(module.__file__).parent)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TRITON_INTERPRET": "1", "TRITON_CACHE_DIR": cache}
        done = subprocess.run([sys.executable, "-c", code, folder, module.__name__, name, json.dumps(args)],
                              env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def tiny_unet_outputs(plain: torch.nn.Module, fused: torch.nn.Module, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two TINY-config UNets on the same channels-last latents and prompt: (plain's output, fused's)."""
    from instantmesh_cli import random_weights as rw

    g = torch.Generator(device=device).manual_seed(0)
    cfg = rw.TINY.unet
    latents = torch.randn(2, cfg["in_channels"], 16, 12, generator=g, device=device)
    latents = latents.contiguous(memory_format=torch.channels_last)
    text = torch.randn(2, 3, cfg["cross_attention_dim"], generator=g, device=device)
    # No TF32 convolutions on CUDA: they would round the two runs' small differences up to ~1e-3.
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        return (plain(latents, 500, encoder_hidden_states=text).sample,
                fused(latents, 500, encoder_hidden_states=text).sample)
