"""``imesh doctor``'s checks of the interpreter, torch, and the folders imesh writes to."""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
from pathlib import Path

from instantmesh_cli.doctor.check import FAIL, OK, WARN, Check, import_torch

MIN_PYTHON = (3, 10)


def check_python() -> Check:
    v = sys.version_info
    detail = f"{platform.python_implementation()} {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if (v.major, v.minor) < MIN_PYTHON:
        return Check("python", FAIL, detail, f"use Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")
    return Check("python", OK, detail)


def check_bytecode() -> Check:
    """Whether new imesh processes read compiled bytecode for their libraries or compile them again."""
    from instantmesh_cli import bytecode

    folder = bytecode.package_folder(bytecode.PROBE_PACKAGE)
    if folder is None:
        return Check("bytecode", WARN, f"{bytecode.PROBE_PACKAGE} is not installed; nothing to check")
    if sys.pycache_prefix is not None:
        return Check("bytecode", OK, f"kept in {sys.pycache_prefix} (sys.pycache_prefix: PYTHONPYCACHEPREFIX, "
                     "or imesh where site-packages cannot hold it)")
    if bytecode.has_bytecode(folder) or (not sys.dont_write_bytecode and bytecode.bytecode_is_cached_in_place(folder)):
        return Check("bytecode", OK, "cached beside the installed packages")
    # Measured on the H200 machine's image, which sets it: 28.7 s to a first GLB, 18.1 s without it.
    return Check("bytecode", WARN, "PYTHONDONTWRITEBYTECODE is set and torch has no compiled bytecode: every new "
                 "process compiles torch, diffusers and transformers from source (about 10 s per cold start)",
                 "unset PYTHONDONTWRITEBYTECODE for imesh (or keep models loaded with imesh serve)")


def check_torch() -> Check:
    torch, err = import_torch()
    if torch is None:
        return Check("torch", FAIL, f"cannot import torch ({err})",
                     "pip install torch (see README: install)")
    cuda = torch.version.cuda
    build = f"CUDA {cuda} build" if cuda else "CPU-only build"
    if not cuda:
        return Check("torch", WARN, f"torch {torch.__version__}, {build}: generation runs on the CPU "
                     "(minutes per image instead of seconds)",
                     "on a machine with an NVIDIA GPU install a CUDA build of torch "
                     "(https://pytorch.org/get-started/locally/)")
    return Check("torch", OK, f"torch {torch.__version__}, {build}")


def _free_gb(path: Path) -> float | None:
    for p in [path, *path.parents]:
        if p.exists():
            try:
                return shutil.disk_usage(p).free / 1e9
            except OSError:
                return None
    return None


def check_paths() -> list[Check]:
    from instantmesh_cli import hub

    checks: list[Check] = []
    try:
        from huggingface_hub import constants

        hf_cache = Path(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001
        hf_cache = Path(os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")).expanduser()
    places = [("hub cache", hf_cache), ("imesh cache", hub.cache_dir())]
    try:
        images = importlib.import_module("instantmesh_cli.images")
        home = getattr(images, "_rembg_home", None)
        if home is not None:
            places.append(("rembg home", Path(home())))
    except Exception:  # noqa: BLE001
        pass
    for label, path in places:
        free = _free_gb(path)
        detail = f"{path} ({'exists' if path.exists() else 'created on first use'}"
        detail += f", {free:.1f} GB free)" if free is not None else ")"
        writable = _writable(path)
        if not writable:
            checks.append(Check(label, FAIL, detail + ": not writable",
                                f"make it writable or point {_env_for(label)} elsewhere"))
        elif free is not None and free < 10 and label == "hub cache":
            checks.append(Check(label, WARN, detail + ": the weights of one model take several GB",
                                f"free disk space or set {_env_for(label)} to a larger disk"))
        else:
            checks.append(Check(label, OK, detail))
    offline = hub.is_offline()
    checks.append(Check("offline mode", OK, "on (HF_HUB_OFFLINE): nothing is downloaded" if offline
                        else "off: missing weights are downloaded on first use"))
    return checks


def _env_for(label: str) -> str:
    return {"hub cache": "HF_HUB_CACHE (or HF_HOME)", "imesh cache": "IMESH_CACHE_DIR",
            "rembg home": "U2NET_HOME"}.get(label, "it")


def _writable(path: Path) -> bool:
    for p in [path, *path.parents]:
        if p.exists():
            return os.access(p, os.W_OK)
    return False
