"""Progress on stderr: live lines on a terminal (a stage line per worker thread, a bar per downloaded file),
one line per finished input elsewhere; library chatter silenced at start-up."""

from __future__ import annotations

import io
import os
import threading

from rich.console import Console

from instantmesh_cli.cli import progress as progress_mod
from instantmesh_cli.cli.progress import BatchProgress


def terminal(monkeypatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(progress_mod, "console", Console(file=out, force_terminal=True, width=100))
    return out


def descriptions(progress: BatchProgress) -> list[str]:
    return [t.description for t in progress._bar.tasks]


def test_terminal_shows_stages_per_thread_and_a_bar_per_download(monkeypatch):
    terminal(monkeypatch)
    with BatchProgress(3) as p:
        p.stage("load", 0, None)
        p.download("sudo-ai/zero123plus-v1.2/vae/diffusion_pytorch_model.safetensors", 10, 100)
        p.download("TencentARC/InstantMesh/instant_mesh_large.ckpt", 5, 50)
        p.download("TencentARC/InstantMesh/instant_mesh_large.ckpt", 50, 50)
        assert descriptions(p) == ["images", "loading models",
                                   "fetching sudo-ai/zero123plus-v1.2/vae/diffusion_pytorch_model.safetensors",
                                   "fetching TencentARC/InstantMesh/instant_mesh_large.ckpt"]
        assert p._bar.tasks[3].completed == 50 and p._bar.tasks[3].fields["unit"] == "bytes"
        p.stage("multiview", 3, 75)  # models loaded: the download bars go
        # The next image is read in another thread while this one is on the GPU: both lines stay.
        worker = threading.Thread(target=p.stage, args=("read", 0, None))
        worker.start()
        worker.join()
        assert descriptions(p) == ["images", "generating views", "reading"]
        steps = next(t for t in p._bar.tasks if t.description == "generating views")
        assert (steps.completed, steps.total) == (3, 75)
        p.stage("refine", 7, 20)
        assert "refining texture" in descriptions(p) and "generating views" not in descriptions(p)


def test_count_column_reads_steps_and_bytes(monkeypatch):
    terminal(monkeypatch)
    column = progress_mod._count_column()
    with BatchProgress(1) as p:
        p.stage("multiview", 12, 75)
        p.download("a/b.bin", 1_500_000, 3_000_000_000)
        steps, download = p._bar.tasks
        assert str(column.render(steps)) == "12/75"
        assert str(column.render(download)) == "1.5 MB/3.0 GB"


def test_not_a_terminal_one_line_per_finished_input(monkeypatch, capsys):
    from instantmesh_cli.chain.job import Job, JobInput, JobOutputs

    monkeypatch.setattr(progress_mod, "console", Console(file=io.StringIO(), force_terminal=False))
    out = progress_mod.console.file
    jobs = [Job(name=f"{n}.png", inputs=[JobInput(label=n)], seed=1, outputs=JobOutputs()) for n in "ab"]
    for job in jobs:
        job.status, job.timings = "ok", {"multiview": 1.0, "export": 0.25}
    with BatchProgress(2) as p:
        assert p._bar is None  # no live display in a log file
        p.stage("multiview", 1, 75)  # nothing
        for job in jobs:
            p.job_done(job)
    assert out.getvalue().splitlines() == ["a.png: ok (1.2 s)", "b.png: ok (1.2 s)"]
    single = io.StringIO()
    monkeypatch.setattr(progress_mod, "console", Console(file=single, force_terminal=False))
    with BatchProgress(1) as p:
        p.job_done(jobs[0])
        p.summary([jobs[0]])
    assert single.getvalue().splitlines() == ["a.png: 1.25 s (multiview 1.00, export 0.25)"]


def test_library_chatter_is_silenced_unless_the_user_says_otherwise(monkeypatch):
    import logging

    from instantmesh_cli import quiet

    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    for name in quiet.ENV_DEFAULTS:
        if name != "TRANSFORMERS_VERBOSITY":
            monkeypatch.delenv(name, raising=False)
    quiet.silence_libraries()
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"  # the user's choice wins
    assert os.environ["HF_HUB_VERBOSITY"] == "error" and os.environ["TQDM_DISABLE"] == "1"
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger().handlers)
    import pooch

    quiet.quiet_pooch()
    assert pooch.get_logger().level == logging.WARNING


def test_downloads_report_each_file_by_name(served):  # noqa: F811
    from instantmesh_cli import settings
    from instantmesh_cli.chain.models import Models
    from instantmesh_cli.chain.options import PipelineOptions

    seen: dict[str, tuple[int, int | None]] = {}
    models = Models(PipelineOptions(device="cpu"), download_progress=lambda f, d, t: seen.__setitem__(f, (d, t)))
    models.load()
    expected = {str(f) for f in settings.model_files(settings.DEFAULT_VARIANT)}
    assert set(seen) == expected  # every file downloaded, each under its own name
    assert all(done == total for done, total in seen.values() if total)
    seen.clear()
    Models(PipelineOptions(device="cpu"), download_progress=lambda f, d, t: seen.__setitem__(f, (d, t))).load()
    assert seen == {}  # all here now: nothing to report


from test_generate import assets, served  # noqa: E402,F401 - fixtures
