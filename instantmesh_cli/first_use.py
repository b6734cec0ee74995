"""CUDA's first-use costs, paid while a new process loads its models instead of inside its first job.

A new process pays, the first time it runs each operation at each shape: cuDNN choosing and
building a convolution's execution plan and an attention's graph, cuBLAS choosing its kernels,
and the driver loading each kernel's code (CUDA loads modules lazily). On the H200 a one-photo
``imesh generate``'s first views took 4.5-6.3 s against 2.0-2.4 s warm; of a profiled first
call, cuDNN building attention graphs took 0.76 s of host time and convolution plans 0.58 s.

torch keeps cuDNN's plans and graphs *per thread* (cuDNN's are not safe to share), so they have
to be built in the thread that then runs the job. :meth:`Models.load
<instantmesh_cli.chain.models.Models.load>` therefore reads the weights in a thread (imports
and file reads, which mostly leave the GIL free) while its own thread replays a *manifest*:
the heavy operations (:data:`HEAVY_OPS`) that the first job of an earlier process with the same
models ran, each once, on uninitialised tensors of the recorded shapes, strides and dtypes. The
values are garbage and nothing reads them; only the shapes choose what gets built.

:func:`recording` writes the manifest: a ``TorchDispatchMode`` (this thread's operations only)
that notes each heavy call's signature during a process's first job when no manifest exists.
A process that warms up in its load (a server, a batch, the bench) then replays its views as CUDA
graphs, which no recorder sees: the warm-up's calls are noted (:func:`noting`) and go first in the
manifest. What only a first process runs (the empty-prompt embedding, cached after it) is left out
(:func:`not_recorded`). A manifest is a hint: one that is missing, unreadable or from other shapes
costs nothing but the time it saves.

Measured on the H200 (one-photo ``imesh generate``, three each, alternating): the replay of 222
calls took 3.6 s beside the load; the first views 6.48-6.80 s -> 4.65-4.70 s, the first
reconstruction 0.60-0.87 s -> 0.43-0.45 s, the whole process 13.66-14.52 s -> 11.94-12.42 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Operations whose first call at a shape builds something (plans, graphs, kernel choices) and that
# are safe on garbage inputs: no indices, no data-dependent control flow. Both the composite
# operations (what a mode sees under ``torch.inference_mode``, where they are not decomposed before
# the Python dispatch key) and what they decompose into (what it sees elsewhere).
HEAVY_OPS = frozenset({
    "aten::conv1d",
    "aten::conv2d",
    "aten::conv3d",
    "aten::conv_transpose2d",
    "aten::convolution",
    "aten::linear",
    "aten::matmul",
    "aten::einsum",
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::scaled_dot_product_attention",
    "aten::_scaled_dot_product_cudnn_attention",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_scaled_dot_product_efficient_attention",
})
_SDPA = "aten::scaled_dot_product_attention."  # the composite, whose kernel is chosen inside
_MAX_CALLS = 2000  # a manifest larger than any job's distinct heavy calls is not ours
_FORMAT = 3  # 2: without the empty-prompt embedding's calls (not_recorded), with a warm-up's (noting); 3: attention steered by size


class _Unsupported(Exception):
    pass


def _encode(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"tensor": list(value.shape), "stride": list(value.stride()), "dtype": str(value.dtype).removeprefix("torch.")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, torch.dtype):
        return {"dtype_value": str(value).removeprefix("torch.")}
    raise _Unsupported(type(value).__name__)


def _decode(value: Any, device: torch.device) -> Any:
    if isinstance(value, dict):
        if "tensor" in value:
            return torch.empty_strided(value["tensor"], value["stride"], dtype=getattr(torch, value["dtype"]), device=device)
        return getattr(torch, value["dtype_value"])
    if isinstance(value, list):
        return [_decode(v, device) for v in value]
    return value


def _op(name: str) -> Any:
    """``aten::convolution.default`` -> the OpOverload."""
    qualified, _, overload = name.partition(".")
    namespace, _, packet = qualified.partition("::")
    return getattr(getattr(getattr(torch.ops, namespace), packet), overload or "default")


_paused = threading.local()  # .depth: how many not_recorded() blocks this thread is inside


@contextlib.contextmanager
def not_recorded() -> Iterator[None]:
    """Calls made inside are not noted by a recording in this thread: work that only a first process does
    (the empty-prompt embedding, computed once and cached) would otherwise be replayed by every later one."""
    _paused.depth = getattr(_paused, "depth", 0) + 1
    try:
        yield
    finally:
        _paused.depth -= 1


class _Recorder(TorchDispatchMode):
    """Notes each distinct heavy call (operation and argument signature) run in this thread."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        super().__init__()
        self.calls: dict[str, None] = dict.fromkeys(known)  # an ordered set of JSON lines
        self.known = len(self.calls)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.name()
        if packet in HEAVY_OPS and len(self.calls) < _MAX_CALLS and not getattr(_paused, "depth", 0):
            try:
                line = json.dumps({"op": f"{packet}.{func._overloadname}", "args": _encode(args),
                                   "kwargs": {k: _encode(v) for k, v in kwargs.items()}}, sort_keys=True)
            except _Unsupported:
                pass
            else:
                self.calls[line] = None
        return out


def manifest_path(cache: Path, **identity: Any) -> Path:
    """Where the manifest of jobs run with these models lives: ``identity`` (model, dtype...) and the
    versions of imesh and torch name it."""
    from instantmesh_cli.version import __version__

    key = json.dumps({"imesh": __version__, "torch": torch.__version__, "format": _FORMAT, **identity},
                     sort_keys=True, default=str)
    return cache / "first-use" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


@contextlib.contextmanager
def noting(known: Iterable[str] = ()) -> Iterator[_Recorder]:
    """Note this thread's heavy calls while inside, after the ``known`` ones (lines of a recorder's ``calls``)."""
    recorder = _Recorder(known)
    with recorder:
        yield recorder


@contextlib.contextmanager
def recording(path: Path, known: Iterable[str] = ()) -> Iterator[_Recorder]:
    """Record this thread's heavy calls while inside, after the ``known`` ones (noted earlier in this
    process: a warm-up's); on a clean exit write them all to ``path`` (atomically; nothing when none ran
    inside, and a cache that cannot be written is let be)."""
    from instantmesh_cli.fileio import write_bytes_atomic

    with noting(known) as recorder:
        yield recorder
    if len(recorder.calls) > recorder.known:
        try:
            write_bytes_atomic(path, ("\n".join(recorder.calls) + "\n").encode())
        except OSError:
            pass


def read_manifest(path: Path) -> list[dict] | None:
    """The calls of the manifest at ``path``; None when it is missing or not a manifest."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        calls = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return None
    if not calls or len(calls) > _MAX_CALLS or not all(isinstance(c, dict) and c.get("op") for c in calls):
        return None
    return calls


@dataclass(frozen=True)
class Replay:
    """What :func:`replay` did: calls run, calls that failed (skipped), seconds."""

    calls: int
    failed: int
    seconds: float


def replay(calls: list[dict], device: torch.device) -> Replay:
    """Run each recorded call once on ``device``, in this thread, on uninitialised tensors.

    A call that fails (an operation this torch lacks, a shape this GPU refuses) is skipped: the
    job will meet the same thing and report it properly.
    """
    from instantmesh_cli.attention import kernel_choice
    from instantmesh_cli.gil import responsive

    start = time.perf_counter()
    failed = 0
    # The loading thread runs Python (imports) beside this one: without ``responsive``, each call
    # here would wait up to 5 ms for the GIL to start.
    with responsive():
        with torch.inference_mode():
            for call in calls:
                try:
                    op = _op(call["op"])
                    args = _decode(call.get("args", []), device)
                    kwargs = _decode_kwargs(call.get("kwargs", {}), device)
                    # The job steers attention's kernel by size (attention.py): the replay must build
                    # what that choice builds, not what torch's default would.
                    steer = kernel_choice(*args[:2]) if call["op"].startswith(_SDPA) else contextlib.nullcontext()
                    with steer:
                        op(*args, **kwargs)
                except Exception:  # noqa: BLE001 - a hint that does not apply is skipped, whatever it raises
                    failed += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return Replay(len(calls), failed, time.perf_counter() - start)


def _decode_kwargs(kwargs: Any, device: torch.device) -> dict:
    if not isinstance(kwargs, dict):
        raise _Unsupported("kwargs")
    return {k: _decode(v, device) for k, v in kwargs.items()}
