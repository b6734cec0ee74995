"""The worker pool: one process per device with its own models, batches spread over them, faults survived.

Two CPU workers stand in for two GPUs. The workers load the same tiny weights from the
fake hub as the in-process runs, so their outputs can be compared byte for byte.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from instantmesh_cli.chain.job import Job, JobInput, JobOutputs, derive_seed
from instantmesh_cli.chain.models import Models
from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.chain.run import run_job
from instantmesh_cli.chain.stages import PHOTO_TO_MESH
from instantmesh_cli.chain.workers import WorkerPool, parse_gpus
from instantmesh_cli.errors import UsageError
from test_generate import assets, photo, served  # noqa: F401 - fixtures

OPTIONS = PipelineOptions(steps=1, device="cpu", texture_size=64, refine_steps=2, quality=False)


def _jobs(folder, out, names):
    jobs = []
    for name in names:
        src = folder / f"{name}.png"
        if not src.exists():
            photo(src, shift=len(jobs))
        jobs.append(Job(name=src.name, inputs=[JobInput(src.name, path=src)], seed=derive_seed(OPTIONS.seed, src.name),
                        options=OPTIONS, outputs=JobOutputs(mesh=out / f"{name}.glb")))
    return jobs


def test_parse_gpus():
    assert parse_gpus("all", available=3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_gpus("1,2", available=3) == ["cuda:1", "cuda:2"]
    assert parse_gpus("2", available=3) == ["cuda:0", "cuda:1"]
    for bad in ("x", "0,0", "5"):
        with pytest.raises(UsageError):
            parse_gpus(bad, available=3)
    with pytest.raises(UsageError, match="no CUDA GPU"):
        parse_gpus("all", available=0)


def test_two_workers_spread_a_batch_and_match_the_local_bytes(served, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    names = [f"p{i}" for i in range(6)]
    local = _jobs(folder, tmp_path / "local", names[:2])
    models = Models(OPTIONS)
    for job in local:
        assert run_job(models, job, PHOTO_TO_MESH).status == "ok", job.error
        # The texture's PNG was made beside the quality check, and it is the one in the file.
        assert job.texture_png is not None and job.texture_png.result() in job.outputs.mesh.read_bytes()
    (folder / "broken.png").write_text("not an image")
    jobs = _jobs(folder, tmp_path / "pool", names[:3] + ["broken"] + names[3:])
    done = []
    with WorkerPool(OPTIONS, ["cpu", "cpu"], start_method="fork") as pool:
        assert len(set(pool.pids)) == 2
        pool.run(jobs, done.append)
    assert [j.name for j in done] == [j.name for j in jobs]
    assert [j.status for j in done] == ["ok", "ok", "ok", "failed", "ok", "ok", "ok"]
    assert "broken.png" in done[3].error_line()
    for job in local:
        pooled = tmp_path / "pool" / job.outputs.mesh.name
        assert pooled.read_bytes() == job.outputs.mesh.read_bytes()
    assert all(j.faces and j.faces > 100 for j in done if j.status == "ok")


def test_a_killed_worker_is_restarted_and_its_job_retried(served, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    jobs = _jobs(folder, tmp_path / "out", [f"k{i}" for i in range(4)])
    seen = []
    with WorkerPool(OPTIONS, ["cpu"], start_method="fork") as pool:
        victim = pool.pids[0]
        futures = [pool.submit(j) for j in jobs]
        # Kill the worker while it works on its first job.
        deadline = time.monotonic() + 60
        while not any(f.done() for f in futures) and time.monotonic() < deadline:
            if pool._slots[0].in_flight:
                time.sleep(0.3)
                os.kill(victim, signal.SIGKILL)
                break
            time.sleep(0.05)
        seen = [f.result(timeout=300) for f in futures]
        assert pool.pids[0] != victim  # a new worker took its place
    assert [j.status for j in seen] == ["ok"] * 4, [j.error for j in seen]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["k0.glb", "k1.glb", "k2.glb", "k3.glb"]


def test_a_worker_that_cannot_load_fails_the_start_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = PipelineOptions(device="cpu", weights_dir=tmp_path / "empty", offline=True)
    (tmp_path / "empty").mkdir()
    from instantmesh_cli.errors import ImeshError

    with pytest.raises(ImeshError, match="could not load its models") as info:
        WorkerPool(options, ["cpu"], start_method="fork").start()
    assert "\n" not in str(info.value)
