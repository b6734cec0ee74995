"""One worker process per GPU, each with its own models, fed jobs by the parent.

A :class:`WorkerPool` is the scheduler that ``imesh generate --gpus``, ``imesh serve`` and the
Ray actors share: each worker process loads its models once (at start, so the pool is
warm when it reports ready) and runs the one chain on the jobs it is sent through its
own :class:`~instantmesh_cli.chain.run.BatchRunner` (CPU work overlapped with the GPU).
Jobs travel as light :class:`~instantmesh_cli.chain.job.Job` values (paths or bytes in,
paths out: workers write outputs themselves, atomically) and come back detached.

Faults: a worker that dies (out of memory, SIGKILL) is restarted and its unfinished jobs
are sent again once; a job whose worker dies twice fails with a one-line error. The other
workers go on. :meth:`WorkerPool.close` drains (running jobs finish) unless told not to.

This module is the parent side (the pool, its tickets and slots); what runs inside a worker
process is in :mod:`~instantmesh_cli.chain.worker_process`, and ``parse_gpus`` (still
importable from here) in :mod:`~instantmesh_cli.chain.gpus`.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from instantmesh_cli.chain.gpus import parse_gpus  # noqa: F401 - re-exported: cli/generate.py and the tests import it from here
from instantmesh_cli.chain.worker_process import _worker_main
from instantmesh_cli.errors import ImeshError

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions

# A job's progress seen from the parent: (job id, stage, done, total).
PoolProgress = Callable[[int, str, int, "int | None"], None]

# Jobs sent to one worker ahead of its GPU: one running, one whose CPU front work overlaps it.
PER_WORKER_IN_FLIGHT = 2
MAX_ATTEMPTS = 2  # a job is tried on a fresh worker once more when its worker dies
MAX_RESTARTS = 5  # a worker that keeps dying is given up

# --------------------------------------------------------------------------- the parent side


@dataclass
class _Ticket:
    job: "Job"
    future: Future
    attempts: int = 0
    slot: int | None = None


@dataclass
class _Slot:
    index: int
    device: str
    process: "mp.process.BaseProcess | None" = None
    inbox: object = None
    in_flight: set[int] = field(default_factory=set)
    ready: bool = False
    dead: bool = False  # restarted too often: no more jobs go here
    restarts: int = 0
    memory: dict | None = None  # the worker's CUDA memory after its last job (None on CPU)


class WorkerPool:
    """Worker processes over ``devices`` (one per entry; repeat a device for several workers on it)."""

    def __init__(
        self,
        options: "PipelineOptions",
        devices: Sequence[str],
        *,
        plan: str = "PHOTO_TO_MESH",
        overlap: bool = True,
        progress: PoolProgress | None = None,
        start_method: str = "spawn",
        start_timeout: float = 600.0,
    ):
        if not devices:
            raise ValueError("a worker pool needs at least one device")
        self.options = options.check()
        self.plan = plan
        self.overlap = overlap
        self.progress = progress
        self.start_timeout = start_timeout
        self._ctx = mp.get_context(start_method)
        self._outbox = self._ctx.Queue()
        self._slots = [_Slot(i, d) for i, d in enumerate(devices)]
        self._tickets: dict[int, _Ticket] = {}
        self._waiting: list[int] = []  # job ids not yet sent, in submission order
        self._ids = itertools.count()
        self._lock = threading.RLock()
        self._closed = False
        self._stopping = False
        self._collector: threading.Thread | None = None
        self.load_seconds: dict[int, float] = {}

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "WorkerPool":
        """Start every worker and wait until each has loaded its models (or one fails: a one-line error)."""
        for slot in self._slots:
            self._spawn(slot)
        deadline = time.monotonic() + self.start_timeout
        while not all(s.ready for s in self._slots):
            try:
                message = self._outbox.get(timeout=0.5)
            except queue.Empty:
                dead = [s for s in self._slots if not s.ready and not s.process.is_alive()]
                if dead:
                    self.close(drain=False)
                    raise ImeshError(f"worker on {dead[0].device} exited while loading (exit code {dead[0].process.exitcode})")
                if time.monotonic() > deadline:
                    self.close(drain=False)
                    raise ImeshError(f"workers did not load their models within {self.start_timeout:.0f} s")
                continue
            kind, index = message[0], message[1]
            if kind == "broken":
                self.close(drain=False)
                raise ImeshError(f"worker on {self._slots[index].device} could not load its models: {message[3]}")
            if kind == "ready":
                self._slots[index].ready = True
                self.load_seconds[index] = message[3]
        self._collector = threading.Thread(target=self._collect, name="imesh-pool", daemon=True)
        self._collector.start()
        return self

    def _spawn(self, slot: _Slot) -> None:
        slot.inbox = self._ctx.Queue()
        slot.ready = False
        slot.process = self._ctx.Process(
            target=_worker_main,
            args=(slot.index, slot.device, self.options, self.plan, self.overlap, slot.inbox, self._outbox),
            name=f"imesh-worker-{slot.index}",
            daemon=True,
        )
        slot.process.start()

    def __enter__(self) -> "WorkerPool":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(drain=exc_type is None)

    @property
    def size(self) -> int:
        return len(self._slots)

    @property
    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None]

    def stats(self) -> dict:
        """What a monitor shows: jobs waiting for a worker, and each worker's state (``memory`` only on CUDA)."""
        with self._lock:
            return {
                "waiting": len(self._waiting),
                "workers": [
                    {"device": s.device, "pid": s.process.pid if s.process is not None else None,
                     "ready": s.ready, "alive": bool(s.process is not None and s.process.is_alive()),
                     "in_flight": len(s.in_flight), "restarts": s.restarts,
                     "load_seconds": self.load_seconds.get(s.index), "memory": s.memory}
                    for s in self._slots
                ],
            }

    # ------------------------------------------------------------------ jobs
    def submit(self, job: "Job") -> Future:
        """Queue ``job`` (its outputs are paths; no stream callbacks); the future resolves to the detached job."""
        if self._closed or self._stopping:
            raise ImeshError("the worker pool is shutting down; no new jobs are taken")
        if job.outputs.mesh_to is not None or job.outputs.cutout_to is not None:
            raise ValueError("pool jobs write files; stream outputs stay in the calling process")
        future: Future = Future()
        with self._lock:
            job_id = next(self._ids)
            self._tickets[job_id] = _Ticket(job, future)
            self._waiting.append(job_id)
            self._dispatch()
        return future

    def cancel(self, future: Future) -> bool:
        """Drop a job that no worker has started; False when it is already running or done."""
        with self._lock:
            for job_id in list(self._waiting):
                ticket = self._tickets[job_id]
                if ticket.future is future:
                    self._waiting.remove(job_id)
                    del self._tickets[job_id]
                    return future.cancel()
        return False

    def run(self, jobs: Sequence["Job"], on_done: Callable[["Job"], None]) -> None:
        """A whole batch: ``on_done(job)`` once per job in input order (skipped jobs pass straight through).

        On a stop (Ctrl-C, SIGTERM), jobs that a worker finished behind the one being waited for, their
        outputs written, are reported too before the stop goes on to the caller (:func:`report_in_order`).
        """
        from instantmesh_cli.chain.run import report_in_order

        report_in_order([job if job.status == "skipped" else self.submit(job) for job in jobs], on_done)

    def _dispatch(self) -> None:
        """Send waiting jobs to the ready workers with the fewest in flight (lock held)."""
        while self._waiting:
            slots = [s for s in self._slots if s.ready and len(s.in_flight) < PER_WORKER_IN_FLIGHT]
            if not slots:
                return
            slot = min(slots, key=lambda s: (len(s.in_flight), s.index))
            job_id = self._waiting.pop(0)
            ticket = self._tickets[job_id]
            ticket.attempts += 1
            ticket.slot = slot.index
            slot.in_flight.add(job_id)
            slot.inbox.put((job_id, ticket.job.detached(keep_inputs=True)))

    def _collect(self) -> None:
        """The parent's one thread that reads worker messages and watches worker processes."""
        while True:
            try:
                message = self._outbox.get(timeout=0.2)
            except queue.Empty:
                message = None
            except (EOFError, OSError):
                return
            with self._lock:
                if message is not None:
                    self._handle(message)
                self._check_workers()
                if self._closed and not self._tickets:
                    return

    def _handle(self, message) -> None:
        kind, index = message[0], message[1]
        slot = self._slots[index]
        if kind == "ready":
            slot.ready = True
            self.load_seconds[index] = message[3]
            self._dispatch()
        elif kind == "broken":
            # A restarted worker that cannot load any more: its jobs fail rather than wait forever.
            for job_id in list(slot.in_flight):
                self._fail(job_id, f"worker on {slot.device} could not load its models: {message[3]}")
            slot.in_flight.clear()
        elif kind == "progress":
            job_id, (stage, done, total) = message[2], message[3]
            ticket = self._tickets.get(job_id)
            if ticket is not None and ticket.job.progress is not None:
                ticket.job.progress(stage, done, total)
            if self.progress is not None:
                self.progress(job_id, stage, done, total)
        elif kind == "memory":
            slot.memory = message[3]
        elif kind == "done":
            job_id, result = message[2], message[3]
            slot.in_flight.discard(job_id)
            ticket = self._tickets.pop(job_id, None)
            if ticket is not None:
                result.progress = ticket.job.progress
                ticket.future.set_result(result)
            self._dispatch()

    def _fail(self, job_id: int, error: str) -> None:
        ticket = self._tickets.pop(job_id, None)
        if ticket is None:
            return
        job = ticket.job.detached()
        job.status, job.error = "failed", error
        ticket.future.set_result(job)

    def _check_workers(self) -> None:
        for slot in self._slots:
            if slot.dead or slot.process is None or slot.process.is_alive() or self._closed:
                continue
            code = slot.process.exitcode
            lost = sorted(slot.in_flight)
            slot.in_flight.clear()
            for job_id in lost:
                ticket = self._tickets.get(job_id)
                if ticket is None:
                    continue
                if ticket.attempts >= MAX_ATTEMPTS:
                    self._fail(job_id, f"its worker on {slot.device} died twice (exit code {code}); "
                                       "out of GPU memory? try --low-vram or a smaller --texture-size")
                else:
                    self._waiting.insert(0, job_id)  # retried first, on whichever worker is ready
            slot.restarts += 1
            if slot.restarts > MAX_RESTARTS:
                slot.dead, slot.ready = True, False
            else:
                self._spawn(slot)
        if self._slots and all(s.dead for s in self._slots):
            for job_id in list(self._waiting):
                self._fail(job_id, "every worker died repeatedly; see `imesh doctor`")
            self._waiting.clear()
        self._dispatch()

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the workers. ``drain``: jobs already submitted finish first (new ones are refused)."""
        self._stopping = True
        if drain and self._collector is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                with self._lock:
                    if not self._tickets:
                        break
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        with self._lock:
            self._closed = True
            for job_id in list(self._tickets):
                self._fail(job_id, "the worker pool was stopped before this job ran")
        for slot in self._slots:
            if slot.process is not None and slot.process.is_alive():
                try:
                    slot.inbox.put(None)
                except (OSError, ValueError):
                    pass
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(timeout=10 if drain else 1)
                if slot.process.is_alive():
                    slot.process.terminate()
                    slot.process.join(timeout=5)
        if self._collector is not None and self._collector is not threading.current_thread():
            self._collector.join(timeout=2)
