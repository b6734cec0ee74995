"""A stop (Ctrl-C, SIGTERM) during a batch: every job whose output was written is reported once, wherever the
stop lands. Both drivers that report from the main thread: the server client and the GPU worker pool."""

import os
import signal
import threading
from concurrent.futures import Future

import pytest

from instantmesh_cli.chain.job import Job
from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.signals import Interrupted, stop_on_signals


def _job(name: str) -> Job:
    return Job(name=name, inputs=[], seed=0, options=PipelineOptions())


def _written(job: Job) -> Job:
    job.status, job.files = "ok", [f"{job.name}.glb"]
    return job


class _Reports:
    """``on_done`` that stops the batch at the very start of the first report (before anything of it is
    done: the moment a stop used to slip between a job's claim and its report), once ``ready`` is set."""

    def __init__(self, ready: threading.Event):
        self.ready, self.names, self.stopped = ready, [], False

    def __call__(self, job: Job) -> None:
        if not self.stopped:
            self.stopped = True
            assert self.ready.wait(10)
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, before the next line
        self.names.append(job.name)


def test_server_client_reports_the_job_a_stop_lands_on_and_the_one_written_behind_it(monkeypatch):
    from instantmesh_cli.serve.client import RemoteBatch

    class QuietClient:
        def delete(self, job_id):
            pass

    second_written = threading.Event()

    def one(self, job):
        _written(job)
        if job.name == "b":
            second_written.set()
        return job

    monkeypatch.setattr(RemoteBatch, "_one", one)
    reports = _Reports(second_written)
    with pytest.raises(Interrupted), stop_on_signals():
        RemoteBatch(QuietClient(), {"workers": {"total": 1}}).run([_job("a"), _job("b")], reports)
    assert reports.names == ["a", "b"]


def _pool_with(monkeypatch, results: dict[str, Future]):
    from instantmesh_cli.chain.workers import WorkerPool

    pool = WorkerPool(PipelineOptions(device="cpu"), ["cpu"])  # no worker process is started
    monkeypatch.setattr(pool, "submit", lambda job: results[job.name])
    return pool


def _resolved(job: Job) -> Future:
    future: Future = Future()
    future.set_result(_written(job))
    return future


def test_worker_pool_reports_the_job_a_stop_lands_on_and_those_written_behind_it(monkeypatch):
    jobs = [_job("a"), _job("b"), _job("c")]
    never: Future = Future()  # c is still running when the stop comes
    pool = _pool_with(monkeypatch, {"a": _resolved(jobs[0]), "b": _resolved(jobs[1]), "c": never})
    ready = threading.Event()
    ready.set()
    reports = _Reports(ready)
    with pytest.raises(Interrupted), stop_on_signals():
        pool.run(jobs, reports)
    assert reports.names == ["a", "b"]


def test_worker_pool_stopped_while_waiting_reports_what_finished_behind(monkeypatch):
    jobs = [_job("a"), _job("b")]
    never: Future = Future()
    pool = _pool_with(monkeypatch, {"a": never, "b": _resolved(jobs[1])})
    names = []
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))  # lands while the pool waits for a
    with pytest.raises(Interrupted), stop_on_signals():
        timer.start()
        pool.run(jobs, lambda job: names.append(job.name))
    timer.join()
    assert names == ["b"]
