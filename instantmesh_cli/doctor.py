"""``imesh doctor``: what this machine can run, and how to fix what it cannot.

Each check returns one :class:`Check` line — ``ok``, ``warn`` (works, but slower or
degraded, or something will be fetched on first use) or ``fail`` (a job will not
run) — with the fix. The only network access is one metadata request to the Hub
(bounded by ``IMESH_HUB_TIMEOUT``, skipped in offline mode); weights are looked up
in ``--weights-dir`` / ``IMESH_WEIGHTS_DIR`` and the Hugging Face cache only.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_PYTHON = (3, 10)
# Peak GPU memory target of the whole pipeline (DESIGN.md §6); below this much free
# memory a run may need --low-vram.
GPU_MEMORY_TARGET_GB = 8.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


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


# ------------------------------------------------------------------ environment
def check_python() -> Check:
    v = sys.version_info
    detail = f"{platform.python_implementation()} {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if (v.major, v.minor) < MIN_PYTHON:
        return Check("python", FAIL, detail, f"use Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")
    return Check("python", OK, detail)


def _torch():
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken CUDA library at import
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return torch, None


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
    torch, err = _torch()
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


def _nvidia_smi() -> dict[str, str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    if not line:
        return None
    driver, _, name = (part.strip() for part in line.partition(","))
    return {"driver": driver, "name": name}


def check_cuda() -> list[Check]:
    torch, err = _torch()
    smi = _nvidia_smi()
    driver = f"driver {smi['driver']}" if smi else "no NVIDIA driver found (nvidia-smi)"
    if torch is None:
        return [Check("cuda", FAIL, f"unknown: torch does not import ({err}); {driver}")]
    if not torch.cuda.is_available():
        if torch.version.cuda:
            why = "torch has CUDA but sees no GPU"
            fix = ("check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES; "
                   "the driver must support CUDA " + str(torch.version.cuda))
        else:
            why = "no CUDA (CPU-only torch)"
            fix = "needs an NVIDIA GPU and a CUDA build of torch for full speed"
        return [Check("cuda", WARN, f"{why}; {driver}. Everything runs on the CPU: multi-view diffusion "
                      "takes minutes and texture baking uses the slower pure-torch rasterizer", fix)]
    checks = [Check("cuda", OK, f"CUDA {torch.version.cuda} runtime, {driver}, "
                    f"{torch.cuda.device_count()} GPU(s)")]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        try:
            free, total = torch.cuda.mem_get_info(i)
        except Exception:  # noqa: BLE001 - some drivers refuse the query
            free, total = None, props.total_memory
        mem = (f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free" if free is not None
               else f"{total / 2**30:.1f} GiB")
        detail = f"{props.name}, compute capability {props.major}.{props.minor}, {mem}"
        if free is not None and free / 2**30 < GPU_MEMORY_TARGET_GB:
            checks.append(Check(f"gpu {i}", WARN, detail,
                                "free GPU memory, or use --low-vram / a smaller --texture-size"))
        else:
            checks.append(Check(f"gpu {i}", OK, detail))
    return checks


def rasterize_test_triangle(device: str = "cuda") -> float:
    """Rasterize one triangle with nvdiffrast; return the covered fraction of a 64² image.

    The triangle (-0.8,-0.8), (0.8,-0.8), (0,0.8) covers 1.28 of the 4 square NDC
    units, i.e. 0.32 of the pixels.
    """
    import torch

    # The same loader the texture stage uses (it also works around torch >= 2.11's extension loading).
    from instantmesh_cli.texture.raster_nvdiffrast import load_plugin

    dr = load_plugin()
    ctx = dr.RasterizeCudaContext(device=device)
    pos = torch.tensor([[[-0.8, -0.8, 0.0, 1.0], [0.8, -0.8, 0.0, 1.0], [0.0, 0.8, 0.0, 1.0]]],
                       dtype=torch.float32, device=device)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32, device=device)
    rast, _ = dr.rasterize(ctx, pos, tri, resolution=[64, 64])
    torch.cuda.synchronize()
    return float((rast[..., 3] > 0).float().mean().item())


def check_nvdiffrast(build: bool = True) -> Check:
    fallback = "texture baking and refinement use the pure-torch rasterizer instead (slower)"
    if importlib.util.find_spec("nvdiffrast") is None:
        return Check("nvdiffrast", WARN, f"not installed; {fallback}", "pip install diffrp-nvdiffrast")
    try:
        importlib.import_module("nvdiffrast.torch")
    except Exception as exc:  # noqa: BLE001
        return Check("nvdiffrast", WARN, f"does not import ({type(exc).__name__}: {exc}); {fallback}"
                     .splitlines()[0], "reinstall diffrp-nvdiffrast")
    torch, _ = _torch()
    if torch is None or not torch.cuda.is_available():
        return Check("nvdiffrast", WARN, f"installed, but it needs CUDA; {fallback}",
                     "on a CUDA machine it builds itself on first use (needs nvcc and ninja)")
    if not build:
        return Check("nvdiffrast", OK, "installed (build test skipped)")
    missing = [tool for tool in ("nvcc", "ninja") if shutil.which(tool) is None and not (
        tool == "nvcc" and os.environ.get("CUDA_HOME"))]
    start = time.perf_counter()
    try:
        covered = rasterize_test_triangle("cuda")
    except Exception as exc:  # noqa: BLE001 - compiler errors, missing CUDA_HOME, ...
        hint = f"install {' and '.join(missing)}; " if missing else ""
        return Check("nvdiffrast", WARN, f"build or rasterization failed ({type(exc).__name__}: {exc}"
                     .splitlines()[0][:300] + f"); {fallback}",
                     hint + "it needs the CUDA toolkit (CUDA_HOME, nvcc), ninja and a C++ compiler")
    seconds = time.perf_counter() - start
    if not 0.25 < covered < 0.40:
        return Check("nvdiffrast", WARN, f"rasterized a test triangle with wrong coverage {covered:.3f} "
                     f"(expected 0.32); {fallback}", "report this with `imesh doctor --json`")
    return Check("nvdiffrast", OK, f"built and rasterized a test triangle in {seconds:.1f} s "
                 f"(coverage {covered:.3f}, expected 0.32)")


def check_triton(run: bool = True) -> Check:
    """The views' fused kernels (``multiview/group_norm_kernels.py``, ``multiview/elementwise_kernels.py``) need
    Triton on CUDA."""
    fallback = ("the views' GroupNorms, GEGLU gates and bias sums run as plain torch operations instead "
                "(about 0.3 s slower a photo on an H200)")
    torch, _ = _torch()
    if torch is None or not torch.cuda.is_available():
        return Check("triton", OK, "not used on the CPU")
    if importlib.util.find_spec("triton") is None:
        return Check("triton", WARN, f"not installed; {fallback}", "pip install triton (torch's CUDA wheels bring it)")
    if not run:
        return Check("triton", OK, "installed (kernel test skipped)")
    import torch.nn.functional as F

    from instantmesh_cli.multiview import elementwise_kernels, group_norm_kernels

    start = time.perf_counter()
    try:
        x = torch.randn(1, 128, 16, 16, device="cuda").contiguous(memory_format=torch.channels_last)
        bias = torch.randn(128, device="cuda")
        projected = torch.randn(64, 2 * 96, device="cuda")
        h, gate = projected.chunk(2, dim=-1)
        pairs = {
            "GroupNorm": (group_norm_kernels.group_norm_nhwc(x, 32, None, None, 1e-5), F.group_norm(x, 32)),
            "GEGLU": (elementwise_kernels.geglu(projected), h * F.gelu(gate)),
            "bias sum": (elementwise_kernels.add_with_bias(x, x, bias), x + x + bias.view(1, -1, 1, 1)),
        }
        errors = {name: (got - want).abs().max().item() for name, (got, want) in pairs.items()}
    except Exception as exc:  # noqa: BLE001 - Triton's compiler fails in many ways (no ptxas, an unknown GPU...)
        return Check("triton", FAIL, f"the fused kernels did not build ({type(exc).__name__}: {exc}"
                     .splitlines()[0][:300] + "); the views cannot run here", "reinstall the triton that your torch names")
    wrong = {name: error for name, error in errors.items() if not error < 1e-4}
    if wrong:
        detail = ", ".join(f"{name} max error {error:.3g}" for name, error in wrong.items())
        return Check("triton", FAIL, f"the fused kernels computed wrong values ({detail}); the views would be wrong",
                     "report this with `imesh doctor --json`")
    return Check("triton", OK, f"the fused kernels (GroupNorm, GEGLU, bias sum) built and matched torch in "
                               f"{time.perf_counter() - start:.1f} s")


def check_onnxruntime() -> Check:
    if importlib.util.find_spec("onnxruntime") is None:
        return Check("onnxruntime", FAIL, "not installed: background removal (rembg) cannot run",
                     'pip install "rembg[cpu]" (or onnxruntime-gpu)')
    try:
        import onnxruntime
    except Exception as exc:  # noqa: BLE001
        return Check("onnxruntime", FAIL, f"does not import ({type(exc).__name__}: {exc})".splitlines()[0],
                     "reinstall onnxruntime")
    providers = ", ".join(p.replace("ExecutionProvider", "") for p in onnxruntime.get_available_providers())
    return Check("onnxruntime", OK, f"onnxruntime {onnxruntime.__version__} ({providers})")


def check_rembg_model(weights_dir: str | os.PathLike[str] | None = None) -> Check:
    """The default matting model: present and matching rembg's pinned md5 (hashing it: well under a second)."""
    from instantmesh_cli.images.matting import (DEFAULT_MATTING_MODEL, download_command, find_matting_model,
                                                matting_model_path, rembg_files)
    from instantmesh_cli.images.matting_download import problem
    from instantmesh_cli.images.matting_pins import MIRROR_ENV, PINNED_FROM_REMBG, pinned

    model = DEFAULT_MATTING_MODEL
    fetch = download_command(model)
    found = find_matting_model(model, weights_dir=weights_dir)
    if found is None:
        return Check("rembg model", WARN, f"{model} is not downloaded yet: the first photo without transparency "
                     "needs it (rembg then fetches it from github.com unless offline); images with real alpha "
                     "do not", f"run `{fetch}` (a mirror: {MIRROR_ENV}), or `{fetch} --to DIR` on a connected "
                     f"machine and pass --weights-dir DIR, or copy {model}.onnx to {matting_model_path(model)}")
    pin = pinned(model)
    if pin is None:  # a default that imesh does not pin: present is all that can be said
        return Check("rembg model", OK, f"{model} at {found}")
    why = problem(found, pin.md5, pin.size)
    if why is not None:
        # Not one of rembg's own places: the weights folder's DIR/rembg/<name>.onnx.
        fix = (f"run `{fetch}`: it replaces it with a verified copy" if found in rembg_files(model)
               else f"run `{fetch} --to {found.parent.parent}` again to replace it")
        return Check("rembg model", FAIL, f"{model} at {found} is corrupt ({why})", fix)
    return Check("rembg model", OK, f"{model} at {found} (md5 matches rembg {PINNED_FROM_REMBG}'s pin)")


# ------------------------------------------------------------------------- hub
def check_hub(endpoint: str | None = None) -> Check:
    """Whether the Hub answers (one request, at most ``IMESH_HUB_TIMEOUT`` seconds)."""
    from instantmesh_cli import hub, settings

    if hub.is_offline():
        return Check("hub", OK, "not contacted: offline mode is on (HF_HUB_OFFLINE)")
    status = hub.probe_hub(endpoint=endpoint)
    if status.has_file:
        return Check("hub", OK, f"{status.endpoint} {status.detail}")
    # A warning, not a failure: cached weights and --weights-dir work without the Hub.
    if status.answered:
        return Check("hub", WARN, f"{status.endpoint} answers, but: {status.detail}",
                     f"check HF_ENDPOINT, and {settings.revision_env_var(status.file.repo_id)} if it is set")
    return Check("hub", WARN, f"{status.endpoint}: {status.detail}; files not on this machine cannot be "
                 "downloaded", "check the network / proxy and HF_ENDPOINT (IMESH_HUB_TIMEOUT sets the wait); "
                 "without network use --offline with --weights-dir DIR from `imesh download --to DIR`")


def check_hf_xet() -> Check:
    """hf_xet is huggingface_hub's fast path for Xet-stored files (the large weights)."""
    from importlib.metadata import PackageNotFoundError, version

    fallback = "large files download over plain HTTP instead (slower, no chunk de-duplication)"
    try:
        found = version("hf_xet")
    except PackageNotFoundError:
        return Check("hf_xet", WARN, f"not installed: {fallback}", 'pip install "huggingface_hub[hf_xet]"')
    if os.environ.get("HF_HUB_DISABLE_XET", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return Check("hf_xet", WARN, f"hf_xet {found} installed but disabled by HF_HUB_DISABLE_XET: {fallback}",
                     "unset HF_HUB_DISABLE_XET")
    return Check("hf_xet", OK, f"hf_xet {found}: Xet-stored files download through it")


# ---------------------------------------------------------------------- weights
def check_weights(weights_dir: str | os.PathLike[str] | None = None) -> list[Check]:
    from instantmesh_cli import hub, settings
    from instantmesh_cli.errors import WeightsError

    try:
        wdir = hub.resolve_weights_dir(weights_dir)
    except WeightsError as exc:
        return [Check("weights dir", FAIL, exc.message, exc.hint or "")]
    checks: list[Check] = []
    revisions = hub.declared_revisions(wdir)
    if wdir is not None:
        own = f" (holds its own revisions: {', '.join(sorted(set(revisions.values())))})" if revisions else ""
        checks.append(Check("weights dir", OK, f"{wdir}{own}"))
    offline = hub.is_offline()
    when = ("offline mode is on, so runs that need them fail" if offline
            else "they are downloaded on first use")

    def line(label: str, files: list, fix: str, needed: bool) -> Check:
        found = hub.present(files, weights_dir=wdir)
        missing = [f for f, p in found.items() if p is None]
        if not missing:
            return Check(label, OK, f"{len(files)} file(s) present")
        names = ", ".join(f.filename for f in missing[:3]) + (" …" if len(missing) > 3 else "")
        what = "not downloaded" if len(missing) == len(files) else f"{len(missing)} of {len(files)} missing"
        return Check(label, FAIL if offline and needed else WARN, f"{what} ({names}); {when}", fix)

    # Files every variant needs (Zero123++ pipeline, white-background UNet, DINO config),
    # then each variant's own reconstruction checkpoint.
    shared = [f for f in settings.model_files(settings.DEFAULT_VARIANT, revisions)
              if f.filename != settings.get_variant(settings.DEFAULT_VARIANT).checkpoint
              or f.repo_id != settings.INSTANTMESH_REPO]
    checks.append(line("weights shared", shared, f"imesh download --model {settings.DEFAULT_VARIANT}", True))
    for name, variant in settings.VARIANTS.items():
        ckpt = [f for f in settings.lrm_files(name, revisions) if f.filename == variant.checkpoint]
        checks.append(line(f"weights {name}", ckpt, f"imesh download --model {name}",
                           name == settings.DEFAULT_VARIANT))
    return checks


# ------------------------------------------------------------------------ paths
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


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0
