"""Schedulers of the one chain: a job's stages in order, or a batch with CPU work overlapped.

Neither knows what a stage does. :func:`run_stages` runs a slice of a plan on a job and
turns a stage's failure into the job's status; :class:`BatchRunner` runs many jobs,
each plan cut into its groups (``front`` CPU work, ``gpu`` work, ``back`` work) so that
the front of job i+1 and the back of job i-1 run in threads while job i is on the GPU. Jobs are reported in input order, each as soon as it and every job before
it are done, from whichever thread finished it.
"""

from __future__ import annotations

import queue
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
    stages = tuple(stages)
    loads = frozenset(name for stage in stages for name in stage.loads)
    with models.recording_first_use(loads):  # a process's first job, for later processes' loads (first_use.py)
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


def run_job(models: "Models", job: "Job", plan: Sequence[Stage], timer: StageTimer | None = None) -> "Job":
    """Every stage of ``plan`` on ``job``, in order, in this thread."""
    return run_stages(models, job, plan, timer or StageTimer(models.device)).settle()


def report_in_order(results: Sequence["Job | Future[Job]"], on_done: JobCallback, *,
                    on_stop: Callable[[], None] = lambda: None) -> None:
    """``on_done`` for each result in order (a job, or a future of one, waited for), from this thread.

    Each job is claimed and reported as one step (:func:`~instantmesh_cli.signals.signals_held`): a
    stop that landed between the two would leave a written output reported by neither path below.
    On a stop (Ctrl-C, SIGTERM), ``on_stop()`` (the driver stops its work), then the jobs that
    finished behind the one being waited for, their outputs written, are reported too, as a local
    run reports every output it wrote before the stop; then the stop goes on to the caller.
    """
    from instantmesh_cli.signals import signals_held

    reported = 0
    try:
        for index, result in enumerate(results):
            job = result.result() if isinstance(result, Future) else result
            with signals_held():
                reported = index + 1
                on_done(job)
    except BaseException:
        on_stop()
        for result in results[reported:]:
            if isinstance(result, Future) and result.done() and not result.cancelled() and result.exception() is None:
                job = result.result()
                if job.status in ("ok", "suspect", "failed") and job.files:
                    on_done(job)
        raise


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
        from instantmesh_cli.signals import signals_held

        with self.lock:
            self.done[index] = job
            while self.next in self.done:
                with signals_held():  # taken and handed over as one step (a no-op off the main thread)
                    self.callback(self.done.pop(self.next))
                    self.next += 1


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
        emit(index, job.settle())

    def run(self, jobs: Iterable["Job"], on_done: JobCallback) -> None:
        """Run every job; ``on_done(job)`` once per job, in input order (skipped and failed ones too).

        ``jobs`` may be a list or a stream (a GPU worker's queue): a feeder thread takes
        each job as it comes and starts its front group, at most two jobs ahead of the GPU.
        On KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the CLI) nothing new
        starts; a back group already running finishes (its writes are atomic) and is
        reported, then the interrupt goes on to the caller.
        """
        emit = _InOrder(on_done)
        if not self.overlap:
            for index, job in enumerate(jobs):
                if job.status != "skipped":
                    run_stages(self.models, job, self.front, self.timer)
                    run_stages(self.models, job, self.gpu, self.timer)
                    run_stages(self.models, job, self.back, self.timer)
                emit(index, job.settle())
            return
        front_pool = ThreadPoolExecutor(1, thread_name_prefix="imesh-front")
        back_pool = ThreadPoolExecutor(1, thread_name_prefix="imesh-back")
        ready: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def hand_over(item) -> None:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def feed() -> None:
            try:
                for index, job in enumerate(jobs):
                    if stop.is_set():
                        return
                    if job.status == "skipped":
                        emit(index, job)
                    else:
                        hand_over((index, job, front_pool.submit(self._front, job)))
            except BaseException as exc:  # noqa: BLE001 - a failing job source ends the batch in the caller's thread
                hand_over(exc)
            finally:
                hand_over(_END)

        feeder = threading.Thread(target=feed, name="imesh-feed", daemon=True)
        feeder.start()
        try:
            last_back: Future | None = None
            while True:
                item = ready.get()
                if item is _END:
                    if last_back is not None:
                        last_back.result()  # the last job's back group, before the pool is shut down
                    break
                if isinstance(item, BaseException):
                    raise item
                index, job, front_future = item
                front_future.result()
                run_stages(self.models, job, self.gpu, self.timer)
                if job.status == "failed":
                    emit(index, job)
                    continue
                # One back group at a time: finished meshes do not pile up in memory behind a slow export.
                if last_back is not None:
                    last_back.result()
                last_back = back_pool.submit(self._back, index, job, emit)
        finally:
            stop.set()
            for pool in (front_pool, back_pool):
                # A running stage finishes (writes are atomic); what has not started is dropped.
                pool.shutdown(wait=True, cancel_futures=True)
            # No thread of ours may outlive the batch: one still inside torch when the interpreter
            # exits after an interrupt aborts the process ("terminate called without an active exception").
            feeder.join(timeout=10)


_END = object()  # the feeder's last item
