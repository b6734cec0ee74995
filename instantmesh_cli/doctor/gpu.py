"""``imesh doctor``'s checks of the GPU: the driver and devices, nvdiffrast's plugin, imesh's Triton kernels."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import time

from instantmesh_cli.doctor.check import FAIL, OK, WARN, Check, import_torch

# Peak GPU memory target of the whole pipeline (DESIGN.md §6); below this much free
# memory a run may need --low-vram.
GPU_MEMORY_TARGET_GB = 8.0


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
    torch, err = import_torch()
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
    torch, _ = import_torch()
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
    torch, _ = import_torch()
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
