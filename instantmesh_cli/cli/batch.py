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
from instantmesh_cli.cli.signals import Interrupted

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
    (``remote``, a :class:`~instantmesh_cli.serve.client.RemoteBatch`); the exit code
    (0 all done, 1 some failed, 130/143 interrupted)."""
    from instantmesh_cli.chain.models import Models
    from instantmesh_cli.chain.run import BatchRunner
    from instantmesh_cli.chain.stages import PHOTO_TO_MESH
    from instantmesh_cli.cli.app import state
    from instantmesh_cli.cli.progress import BatchProgress

    finished: list["Job"] = []
    engine = "local" if remote is None else remote.engine
    sheet = ContactSheet(_sheet_path(outputs)) if contact_sheet else None

    def on_done(job: "Job") -> None:
        finished.append(job)
        if sheet is not None:
            sheet.add(job)
        progress.job_done(job)
        if job.status == "failed" and state.debug and job.exception is not None:
            import traceback

            traceback.print_exception(job.exception)
        for warning in job.warnings:
            warn_line(f"{job.name}: {warning}")
        if json_lines:
            sys.stdout.write(json.dumps({**job.record(), "engine": engine}) + "\n")
            sys.stdout.flush()
        elif job.status in ("ok", "suspect"):
            for path in job.files[:1]:
                sys.stdout.write(f"{path}\n")
                sys.stdout.flush()

    with BatchProgress(len(items), enabled=not quiet) as progress:
        jobs = photo_jobs(
            options, items, outputs, fmt, skip_existing=skip_existing, save_views=save_views,
            save_cutout=save_cutout, write_stdout=write_stdout, progress=progress.stage,
        )
        try:
            if remote is not None:
                remote.run(jobs, on_done)
            elif devices:
                from instantmesh_cli.chain.workers import WorkerPool

                progress.stage("load", 0, None)
                with WorkerPool(options, devices, overlap=overlap) as pool:
                    pool.run(jobs, on_done)
            else:
                models = Models(options, download_progress=progress.download)
                BatchRunner(models, PHOTO_TO_MESH, overlap=overlap).run(jobs, on_done)
        except KeyboardInterrupt as exc:
            progress.stop()
            error_line("interrupted" + (f" by {exc.signal_name}" if isinstance(exc, Interrupted) else ""))
            progress.summary(finished, interrupted=True)
            return exc.exit_code if isinstance(exc, Interrupted) else 130
    progress.summary(finished)
    if any(j.status == "failed" for j in finished):
        return 1
    return 3 if any(j.status == "suspect" for j in finished) else 0


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
