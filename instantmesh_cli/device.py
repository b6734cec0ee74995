"""``--device`` / ``--dtype`` turned into torch values, and the one device synchronisation.

Every stage and driver asks this module; nothing else keeps a dtype table or its own
``cuda.synchronize`` helper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from instantmesh_cli.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")


def resolve_device(name: "str | torch.device" = "auto") -> "torch.device":
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda``/``cuda:N``/``cpu``/``mps`` as given (checked)."""
    import torch

    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was requested but is not available", hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("MPS was requested but is not available", hint="use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def parse_dtype(name: "str | torch.dtype") -> "torch.dtype":
    """``fp32`` / ``fp16`` / ``bf16`` (or a torch dtype) → torch dtype; no device rule applied."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    try:
        return table[(name or "").strip().lower()]
    except KeyError:
        raise UsageError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPE_NAMES)}") from None


def resolve_dtype(name: "str | torch.dtype", device: "torch.device") -> "torch.dtype":
    """Compute precision. ``auto``: fp16 on CUDA, fp32 elsewhere (CPU kernels have no fast fp16)."""
    import torch

    if isinstance(name, str) and (name or "auto").strip().lower() == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtype = parse_dtype(name)
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU does not support bf16", hint="use --dtype fp16")
    if dtype == torch.float16 and device.type == "cpu":
        raise UsageError("fp16 is not supported on the CPU; use --dtype fp32 or bf16")
    return dtype


def synchronize(device: "torch.device | None") -> None:
    """Wait for queued kernels on ``device`` (a no-op off CUDA), so wall-clock times mean what they say."""
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def device_name(device: "torch.device") -> str:
    """A human name: the GPU's product name, else ``CPU``."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return device.type.upper()
