"""RemoteBatch.run: every job whose output was written is reported once, wherever a stop lands."""

import pytest


def test_a_stop_that_lands_as_a_job_is_reported_loses_no_report(monkeypatch):
    # Every job whose output was written is reported exactly once, whenever the stop lands: here it lands
    # at the very start of the report of the first job, the moment a stop used to slip between the claim
    # and the report (the job's file written, its JSON line never printed).
    import os
    import signal as signals
    import threading

    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.cli.signals import Interrupted, stop_on_signals
    from instantmesh_cli.serve.client import RemoteBatch

    class QuietClient:
        def delete(self, job_id):
            pass

    second_done = threading.Event()

    def finished(self, job):
        if job.name == "b":
            second_done.set()
        job.status, job.files = "ok", [f"{job.name}.glb"]
        return job

    monkeypatch.setattr(RemoteBatch, "_one", finished)
    batch = RemoteBatch(QuietClient(), {"workers": {"total": 1}})
    jobs = [Job(name=name, inputs=[], seed=0, options=PipelineOptions()) for name in ("a", "b")]
    reports, stopped = [], []

    def on_done(job):
        if not stopped:
            stopped.append(True)
            assert second_done.wait(10)  # both written before the stop
            os.kill(os.getpid(), signals.SIGINT)  # the handler runs here, before the next line
        reports.append(job.name)

    with pytest.raises(Interrupted), stop_on_signals():
        batch.run(jobs, on_done)
    assert reports == ["a", "b"]
