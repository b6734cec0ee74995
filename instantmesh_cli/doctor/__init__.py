"""``imesh doctor``: what this machine can run, and how to fix what it cannot.

Each check returns one :class:`Check` line — ``ok``, ``warn`` (works, but slower or
degraded, or something will be fetched on first use) or ``fail`` (a job will not
run) — with the fix. The only network access is one metadata request to the Hub
(bounded by ``IMESH_HUB_TIMEOUT``, skipped in offline mode); weights are looked up
in ``--weights-dir`` / ``IMESH_WEIGHTS_DIR`` and the Hugging Face cache only.
"""

from __future__ import annotations

import os
from typing import Callable

from instantmesh_cli.doctor.check import FAIL, OK, WARN, Check
from instantmesh_cli.doctor.downloads import check_hf_xet, check_hub, check_onnxruntime, check_rembg_model, check_weights
from instantmesh_cli.doctor.environment import MIN_PYTHON, check_bytecode, check_paths, check_python, check_torch
from instantmesh_cli.doctor.gpu import (GPU_MEMORY_TARGET_GB, check_cuda, check_nvdiffrast, check_triton,
                                        rasterize_test_triangle)

__all__ = [
    "FAIL", "GPU_MEMORY_TARGET_GB", "MIN_PYTHON", "OK", "WARN", "Check", "check_bytecode", "check_cuda",
    "check_hf_xet", "check_hub", "check_nvdiffrast", "check_onnxruntime", "check_paths", "check_python",
    "check_rembg_model", "check_torch", "check_triton", "check_weights", "exit_code", "rasterize_test_triangle",
    "run_checks",
]


def run_checks(*, weights_dir: str | os.PathLike[str] | None = None, gpu_test: bool = True,
               on_start: Callable[[str], None] | None = None) -> list[Check]:
    """All checks in display order. ``gpu_test`` builds nvdiffrast and rasterizes on CUDA."""
    checks: list[Check] = []

    def add(name: str, fn: Callable[[], list[Check] | Check]) -> None:
        if on_start is not None:
            on_start(name)
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - a broken probe is itself a finding
            result = Check(name, FAIL, f"check crashed: {type(exc).__name__}: {exc}".splitlines()[0],
                           "run with --debug and report it")
        checks.extend(result if isinstance(result, list) else [result])

    add("python", check_python)
    add("bytecode", check_bytecode)
    add("torch", check_torch)
    add("cuda", check_cuda)
    add("nvdiffrast", lambda: check_nvdiffrast(build=gpu_test))
    add("triton", lambda: check_triton(run=gpu_test))
    add("onnxruntime", check_onnxruntime)
    add("rembg model", lambda: check_rembg_model(weights_dir))
    add("hub", check_hub)
    add("hf_xet", check_hf_xet)
    add("weights", lambda: check_weights(weights_dir))
    add("paths", check_paths)
    return checks


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0
