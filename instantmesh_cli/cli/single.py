"""Running one job for the single-input commands (prepare, multiview, reconstruct)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Sequence

from instantmesh_cli.cli.common import warn_line

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.chain.stages import Stage


def input_of(path_or_dash: str):
    """A :class:`JobInput` for a path or ``-`` (image bytes on stdin, read now)."""
    from pathlib import Path

    from instantmesh_cli.chain.job import JobInput

    if path_or_dash == "-":
        return JobInput(label="stdin", data=sys.stdin.buffer.read())
    return JobInput(label=path_or_dash, path=Path(path_or_dash))


def run_single(options: "PipelineOptions", job: "Job", plan: Sequence["Stage"], *, json_out: bool, quiet: bool) -> "Job":
    """Run ``plan`` on ``job`` with progress on stderr; print its files (or its JSON) on stdout.

    A failure raises its one-line error (exit 1), like any command.
    """
    from instantmesh_cli.chain.models import Models
    from instantmesh_cli.chain.run import run_job
    from instantmesh_cli.cli.progress import BatchProgress
    from instantmesh_cli.errors import ImeshError

    with BatchProgress(1, enabled=not quiet) as progress:
        job.progress = progress.stage
        models = Models(options, download_progress=progress.download, single_job=True)
        run_job(models, job, plan)
    for warning in job.warnings:
        warn_line(f"{job.name}: {warning}")
    if json_out:
        sys.stdout.write(json.dumps(job.record()) + "\n")
        sys.stdout.flush()
    if job.status == "failed":
        if isinstance(job.exception, ImeshError):
            raise job.exception
        raise ImeshError(job.error_line()) from job.exception
    if not json_out:
        for path in job.files:
            sys.stdout.write(f"{path}\n")
        sys.stdout.flush()
    if not quiet:
        progress.summary([job])
    if job.status == "suspect":
        import typer

        progress.job_done(job)
        raise typer.Exit(code=3)
    return job
