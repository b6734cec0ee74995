"""The command-line batch: jobs from inputs, the runner, progress on stderr, data on stdout, signals.

Every input the user named or a folder held gets exactly one line on stdout with
``--json`` (finished, failed and skipped alike), written as the job finishes. Ctrl-C and
SIGTERM stop the batch: running writes finish (atomically), finished jobs are reported,
one "interrupted" line and the summary follow, and the exit code is 130 / 143.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from instantmesh_cli.cli.common import error_line, warn_line
from instantmesh_cli.signals import Interrupted, signals_held

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.inputs import InputItem


def photo_jobs(
    options: "PipelineOptions",
    items: "list[InputItem]",
    outputs: "list[Path | None]",
    fmt: str,
    *,
    skip_existing: bool = False,
    save_views: bool = False,
    save_cutout: bool = False,
    write_stdout: Callable[[bytes], None] | None = None,
    progress=None,
) -> "list[Job]":
    """One :class:`Job` per input; stdin is read here, once, by the one job it belongs to."""
    from instantmesh_cli.chain.job import Job, JobInput, JobOutputs, derive_seed
    from instantmesh_cli.cli.common import ensure_writable

    jobs = []
    for item, target in zip(items, outputs):
        if target is not None:
            ensure_writable(target)  # before any model loads: a read-only folder fails now, not after the work
        if item.is_stdin:
            source = JobInput(label="stdin", data=sys.stdin.buffer.read())
        else:
            source = JobInput(label=item.name, path=item.path)
        out = JobOutputs(
            mesh=target,
            mesh_format=fmt,
            mesh_to=write_stdout if target is None else None,
            views=target.with_name(f"{target.stem}_views.png") if save_views and target is not None else None,
            cutout=target.with_name(f"{target.stem}_cutout.png") if save_cutout and target is not None else None,
        )
        job = Job(name=item.name, inputs=[source], seed=derive_seed(options.seed, item.name), options=options,
                  outputs=out, progress=progress)
        if skip_existing and target is not None and target.exists():
            job.status = "skipped"
        jobs.append(job)
    return jobs


class BatchReport:
    """What a batch shows, wherever its jobs run (this process, worker processes, Ray actors):
    per job its warnings, error line and stdout line (its path, or its JSON object with
    ``--json``), the contact sheet; progress on stderr; the summary and the exit code."""

    def __init__(self, total: int, *, json_lines: bool, quiet: bool, sheet: "ContactSheet | None" = None):
        from instantmesh_cli.cli.progress import BatchProgress

        self.json_lines = json_lines
        self.sheet = sheet
        self.stdout = sys.stdout  # kept: a driver may point sys.stdout elsewhere while libraries chatter
        self.progress = BatchProgress(total, enabled=not quiet)
        self.finished: list["Job"] = []

    def done(self, job: "Job", extra: dict | None = None) -> None:
        """Report one finished (or failed, or skipped) job; ``extra`` keys join its JSON object.

        A stop signal during the report waits for its end: the job is reported whole or not at all."""
        with signals_held():
            self._report(job, extra)

    def _report(self, job: "Job", extra: dict | None) -> None:
        from instantmesh_cli.cli.app import state

        self.finished.append(job)
        if self.sheet is not None:
            self.sheet.add(job)
        self.progress.job_done(job)
        if job.status == "failed" and state.debug and job.exception is not None:
            import traceback

            traceback.print_exception(job.exception)
        for warning in job.warnings:
            warn_line(f"{job.name}: {warning}")
        if self.json_lines:
            self.stdout.write(json.dumps({**job.record(), **(extra or {})}) + "\n")
            self.stdout.flush()
        elif job.status in ("ok", "suspect"):
            for path in job.files[:1]:
                self.stdout.write(f"{job.outputs.shown(path)}\n")
                self.stdout.flush()

    def run(self, body: Callable[["BatchReport"], None]) -> int:
        """Run ``body(self)`` with progress shown; the exit code (0 all done, 1 some failed,
        3 some suspect, 130/143 interrupted)."""
        finished = self.finished
        with self.progress:
            try:
                body(self)
            except KeyboardInterrupt as exc:
                self.progress.stop()
                error_line("interrupted" + (f" by {exc.signal_name}" if isinstance(exc, Interrupted) else ""))
                self.progress.summary(finished, interrupted=True)
                return exc.exit_code if isinstance(exc, Interrupted) else 130
        self.progress.summary(finished)
        if any(j.status == "failed" for j in finished):
            return 1
        return 3 if any(j.status == "suspect" for j in finished) else 0


def run_photo_batch(
    options: "PipelineOptions",
    items: "list[InputItem]",
    outputs: "list[Path | None]",
    fmt: str,
    *,
    skip_existing: bool,
    save_views: bool,
    save_cutout: bool,
    json_lines: bool,
    quiet: bool,
    overlap: bool,
    write_stdout: Callable[[bytes], None],
    devices: list[str] | None = None,
    contact_sheet: bool = False,
    remote=None,
) -> int:
    """Run the batch, in this process, over worker processes on ``devices``, or on a server
    (``remote``, a :class:`~instantmesh_cli.serve.client.RemoteBatch`); the exit code.
    Each JSON object says which ran it: ``"engine": "local"`` or ``"server"``."""
    from instantmesh_cli.chain.models import Models
    from instantmesh_cli.chain.run import BatchRunner
    from instantmesh_cli.chain.stages import PHOTO_TO_MESH

    sheet = ContactSheet(_sheet_path(outputs)) if contact_sheet else None
    report = BatchReport(len(items), json_lines=json_lines, quiet=quiet, sheet=sheet)

    def body(report: BatchReport) -> None:
        progress = report.progress
        jobs = photo_jobs(
            options, items, outputs, fmt, skip_existing=skip_existing, save_views=save_views,
            save_cutout=save_cutout, write_stdout=write_stdout, progress=progress.stage,
        )
        engine = {"engine": "local" if remote is None else remote.engine}

        def done(job: "Job") -> None:
            report.done(job, engine)

        if remote is not None:
            remote.run(jobs, done)
        elif devices:
            from instantmesh_cli.chain.workers import WorkerPool

            progress.stage("load", 0, None)
            with WorkerPool(options, devices, overlap=overlap) as pool:
                pool.run(jobs, done)
        else:
            # One photo: nothing to warm up for (Models says why).
            models = Models(options, download_progress=progress.download, single_job=len(jobs) <= 1)
            BatchRunner(models, PHOTO_TO_MESH, overlap=overlap).run(jobs, done)

    return report.run(body)


def run_ray_batch(
    options: "PipelineOptions",
    args: list[str],
    output: str,
    fmt: str | None,
    *,
    address: str,
    actors: int | None,
    recursive: bool,
    skip_existing: bool,
    save_views: bool,
    save_cutout: bool,
    json_lines: bool,
    quiet: bool,
    contact_sheet: bool = False,
) -> int:
    """The batch on a Ray cluster (``--ray``): reported like a local batch, each job as it finishes,
    its JSON object with the Ray node that ran it."""
    from instantmesh_cli.cluster import require_ray

    require_ray()
    from instantmesh_cli.chain.options import MESH_FORMATS
    from instantmesh_cli.cluster import driver

    sources = driver.expand_sources(args, recursive=recursive)
    targets, ext = driver.plan_targets(sources, output, fmt, MESH_FORMATS)
    sheet = None
    if contact_sheet:
        from instantmesh_cli.cluster import storage
        from instantmesh_cli.errors import UsageError

        if any(storage.is_remote(t) for t in targets):
            raise UsageError("--contact-sheet renders the outputs here: use it with a local -o, or run `imesh preview` later")
        sheet = ContactSheet(_sheet_path([Path(t) for t in targets]))
    report = BatchReport(len(sources), json_lines=json_lines, quiet=quiet, sheet=sheet)
    # Ray prints its cluster messages (a task retried, an actor died) to sys.stdout, which carries
    # only data: they go to stderr with --debug, else nowhere (what they mean comes back in the jobs).
    import contextlib
    import os

    from instantmesh_cli.cli.app import state

    with contextlib.ExitStack() as stack:
        chatter = sys.stderr if state.debug else stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stdout(chatter))
        return report.run(lambda report: driver.run_rows(
            options, sources, targets, ext, address=address, actors=actors, skip_existing=skip_existing,
            save_views=save_views, save_cutout=save_cutout, on_done=report.done,
            on_start=lambda: report.progress.stage("load", 0, None), verbose=state.debug,
        ))


def _sheet_path(outputs: "list[Path | None]") -> Path:
    """contact_sheet.png in the folder of the outputs (their common folder)."""
    import os

    folders = {str(p.parent) for p in outputs if p is not None}
    return Path(os.path.commonpath(sorted(folders))) / "contact_sheet.png"


class ContactSheet:
    """The batch's contact sheet, rewritten (atomically) after every finished job, so an interrupted
    batch still has one. Each output's thumbnail is rendered once, from the exported file."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: list = []

    def add(self, job: "Job") -> None:
        from instantmesh_cli.preview.sheet import ContactEntry, contact_sheet, thumbnail

        if job.status == "skipped":
            return
        q = job.quality or {}
        if job.status == "failed":
            detail = job.error or ""
        else:
            detail = f"PSNR {q['psnr']} dB, IoU {q['iou']}" if q.get("psnr") is not None else ""
        picture = None
        if job.status != "failed" and job.outputs.mesh is not None and job.outputs.mesh.exists():
            picture = thumbnail(job.outputs.mesh, device=job.options.device)
        self.entries.append(ContactEntry(Path(job.name).name, job.status, thumbnail=picture, detail=detail))
        contact_sheet(self.entries, self.path)
