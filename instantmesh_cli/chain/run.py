"""Schedulers of the one chain: a job's stages in order, or a batch with CPU work overlapped.

Neither knows what a stage does. :func:`run_stages` runs a slice of a plan on a job and
turns a stage's failure into the job's status; :class:`BatchRunner` runs many jobs,
each plan cut into its groups (``front`` CPU work, ``gpu`` work, ``back`` work) so that
the front of job i+1 and the back of job i-1 run in worker threads while job i is on
the GPU. Jobs are reported in input order, each as soon as it and every job before
it are done, from whichever thread finished it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from instantmesh_cli.chain.stages import Stage, describe
from instantmesh_cli.timing import StageTimer

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.models import Models

JobCallback = Callable[["Job"], None]


def run_stages(models: "Models", job: "Job", stages: Iterable[Stage], timer: StageTimer) -> "Job":
    """Run ``stages`` on ``job`` in order; the first failure ends the job (status, one-line error)."""
    if not models.serves(job.options):
        raise ValueError(f"job {job.name!r} needs other models than these (model, device, dtype, weights)")
    for stage in stages:
        if job.status in ("failed", "skipped"):
            break
        job.report(stage.name, 0, None)
        try:
            with timer(stage.name, job.timings):
                did = stage.run(models, job)
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop a batch; KeyboardInterrupt passes
            job.status, job.error, job.exception = "failed", describe(exc), exc
            break
        if did is False:
            job.timings.pop(stage.name, None)
    return job


def finish(job: "Job") -> "Job":
    if job.status == "pending":
        job.status = "ok"
    return job


def run_job(models: "Models", job: "Job", plan: Sequence[Stage], timer: StageTimer | None = None) -> "Job":
    """Every stage of ``plan`` on ``job``, in order, in this thread."""
    return finish(run_stages(models, job, plan, timer or StageTimer(models.device)))


def split_groups(plan: Sequence[Stage]) -> tuple[tuple[Stage, ...], tuple[Stage, ...], tuple[Stage, ...]]:
    """``plan`` as its (front, gpu, back) stages; the order of the plan is kept within each."""
    return tuple(tuple(s for s in plan if s.group == g) for g in ("front", "gpu", "back"))  # type: ignore[return-value]


class _InOrder:
    """Hands jobs to ``callback`` in index order, each as soon as every earlier one has been handed over."""

    def __init__(self, callback: JobCallback):
        self.callback = callback
        self.lock = threading.Lock()
        self.done: dict[int, "Job"] = {}
        self.next = 0

    def __call__(self, index: int, job: "Job") -> None:
        with self.lock:
            self.done[index] = job
            while self.next in self.done:
                self.callback(self.done.pop(self.next))
                self.next += 1


def _inline(fn, *args) -> Future:
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - carried to the consumer as a pool would carry it
        future.set_exception(exc)
    return future


class BatchRunner:
    """Runs jobs through ``plan`` on ``models``; ``overlap`` puts front and back groups in worker threads."""

    def __init__(self, models: "Models", plan: Sequence[Stage], *, overlap: bool = True, timer: StageTimer | None = None):
        self.models = models
        self.front, self.gpu, self.back = split_groups(plan)
        self.overlap = overlap
        self.timer = timer or StageTimer(models.device)

    def _front(self, job: "Job") -> "Job":
        return run_stages(self.models, job, self.front, self.timer)

    def _back(self, index: int, job: "Job", emit: _InOrder) -> None:
        run_stages(self.models, job, self.back, self.timer)
        emit(index, finish(job))

    def run(self, jobs: Sequence["Job"], on_done: JobCallback) -> None:
        """Run every job; ``on_done(job)`` once per job, in input order (skipped and failed ones too).

        On KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the CLI) nothing new
        starts; a back group already running finishes (its writes are atomic) and is
        reported, then the interrupt goes on to the caller.
        """
        emit = _InOrder(on_done)
        todo = []
        for index, job in enumerate(jobs):
            if job.status == "skipped":
                emit(index, job)
            else:
                todo.append((index, job))
        if not todo:
            return
        front_pool = ThreadPoolExecutor(1, thread_name_prefix="imesh-front") if self.overlap else None
        back_pool = ThreadPoolExecutor(1, thread_name_prefix="imesh-back") if self.overlap else None

        def submit(pool, fn, *args) -> Future:
            return pool.submit(fn, *args) if pool is not None else _inline(fn, *args)

        try:
            queue = iter(todo)
            first = next(queue)
            pending = (first, submit(front_pool, self._front, first[1]))
            last_back: Future | None = None
            while pending is not None:
                (index, job), front_future = pending
                upcoming = next(queue, None)
                pending = None if upcoming is None else (upcoming, submit(front_pool, self._front, upcoming[1]))
                front_future.result()
                run_stages(self.models, job, self.gpu, self.timer)
                if job.status == "failed":
                    emit(index, job)
                    continue
                # One back group at a time: finished meshes do not pile up in memory behind a slow export.
                if last_back is not None:
                    last_back.result()
                last_back = submit(back_pool, self._back, index, job, emit)
        finally:
            for pool in (front_pool, back_pool):
                if pool is not None:
                    # A running stage finishes (writes are atomic); what has not started is dropped.
                    pool.shutdown(wait=True, cancel_futures=True)

