"""The UNet passes under torch.compile (``--compile``): the same views, and Inductor's work kept
in imesh's cache, so that a new process reads it back instead of compiling again.

One small UNet (one level, four self-attention layers) keeps Inductor's C++ builds short on
two cores; the code paths are the full model's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from instantmesh_cli import random_weights as rw
from instantmesh_cli.errors import UsageError
from instantmesh_cli.multiview.pipeline import Zero123PlusPipeline

SMALL = dataclasses.replace(rw.TINY, unet={
    **rw.TINY_UNET_CONFIG,
    "attention_head_dim": [4],
    "block_out_channels": [32],
    "down_block_types": ["CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D"],
})
CALL = {"steps": 3, "height": 64, "width": 32, "seed": 5}  # 3 steps, reference batch 5: one write pass of 3 steps


def _can_build_cpu_kernels() -> bool:
    import shutil
    import sysconfig
    from pathlib import Path

    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return headers.is_file() and any(shutil.which(c) for c in ("g++", "c++", "clang++"))


pytestmark = pytest.mark.skipif(not _can_build_cpu_kernels(),
                                reason="Inductor builds C++ kernels on the CPU: no compiler or Python headers here")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return rw.write_zero123plus(tmp_path_factory.mktemp("small") / "z123", SMALL, seed=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("imesh-cache")


def _image() -> Image.Image:
    return Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))


def _pipeline(folder, **options) -> Zero123PlusPipeline:
    return Zero123PlusPipeline.from_folder(folder, dtype="fp32", device="cpu", **options)


def _record_inductor_settings(mp: pytest.MonkeyPatch) -> None:
    """Unset Inductor's variables in a way that undo also removes what the pipeline sets."""
    for var in ("TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        mp.setenv(var, "")
        mp.delenv(var)


@pytest.fixture(scope="module")
def compiled_run(folder, cache):
    """A first compiled run in this process: compiles both passes, then the views."""
    mp = pytest.MonkeyPatch()
    _record_inductor_settings(mp)
    mp.setenv("IMESH_CACHE_DIR", str(cache))
    notes: list[str] = []
    try:
        pipe = _pipeline(folder, compile=True, compile_log=notes.append)
        warm_s = pipe.warm_up(steps=CALL["steps"], height=CALL["height"], width=CALL["width"])
        grid = np.asarray(pipe(_image(), **CALL))
        yield pipe, grid, notes, warm_s
    finally:
        mp.undo()


def test_compiled_views_match_the_eager_views(folder, compiled_run):
    pipe, grid, notes, warm_s = compiled_run
    eager = np.asarray(_pipeline(folder)(_image(), **CALL))
    # warm_up compiled both passes; the call itself compiled nothing more (same shapes).
    assert [kind for kind, _ in pipe.compiled.stats.first_calls] == ["write", "read"]
    assert len(notes) == 2 and "compiling the UNet's write pass" in notes[0]
    assert warm_s > 0
    # fp32 on the CPU: the generated kernels only round differently.
    assert np.abs(grid.astype(int) - eager).max() <= 2


def test_inductor_keeps_its_work_in_imesh_cache(cache, compiled_run):
    kept = list((cache / "inductor").rglob("*"))
    assert any(p.is_file() for p in kept), "nothing written under IMESH_CACHE_DIR/inductor"


def test_a_new_process_reads_the_cache_and_gives_the_same_bytes(folder, cache, compiled_run, tmp_path):
    _, grid, _, _ = compiled_run
    out = tmp_path / "grid.npy"
    code = textwrap.dedent(f"""
        import json, numpy as np
        from PIL import Image
        from torch._dynamo.utils import counters
        from instantmesh_cli.multiview.pipeline import Zero123PlusPipeline
        pipe = Zero123PlusPipeline.from_folder({str(folder)!r}, dtype="fp32", device="cpu", compile=True)
        image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
        np.save({str(out)!r}, np.asarray(pipe(image, **{CALL!r})))
        print(json.dumps({{k: v for k, v in counters["inductor"].items() if k.startswith("fxgraph_cache")}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")}
    env["IMESH_CACHE_DIR"] = str(cache)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-1500:]
    counts = json.loads(done.stdout.splitlines()[-1])
    # Every graph came from the cache the first process filled: nothing was compiled again.
    assert counts.get("fxgraph_cache_hit", 0) >= 2 and counts.get("fxgraph_cache_miss", 0) == 0, counts
    assert np.array_equal(np.load(out), grid)


def test_compile_refuses_low_vram():
    from instantmesh_cli.chain.options import PipelineOptions

    with pytest.raises(UsageError, match="--compile cannot be combined with --low-vram"):
        PipelineOptions(compile=True, low_vram=True).check()


def test_a_compiler_failure_is_one_line_naming_the_pass(folder, cache, monkeypatch):
    from instantmesh_cli.multiview.compiled import CompileError

    _record_inductor_settings(monkeypatch)
    monkeypatch.setenv("IMESH_CACHE_DIR", str(cache))
    pipe = _pipeline(folder, compile=True)
    passes = pipe.compiled

    def broken(*args):
        pipe.store.mode = "write"  # a failure half-way through a pass leaves the store in use
        raise RuntimeError("InductorError: backend exploded\nlong traceback text")

    passes._write = broken
    with pytest.raises(CompileError) as caught:
        passes.write(*[torch.zeros(1)] * 3)
    assert str(caught.value).startswith("--compile: cannot compile the UNet's write pass here: InductorError: "
                                        "backend exploded (run without --compile")
    assert "\n" not in str(caught.value) and pipe.store.mode == "off"
