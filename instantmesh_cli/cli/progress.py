"""Progress on stderr: a bar per stage on a terminal, one line per finished input elsewhere; the summary."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from instantmesh_cli.cli.common import console, error_line, warn_line

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job

STAGE_LABELS = {
    "read": "reading",
    "prepare": "removing background",
    "load": "loading models",
    "download": "fetching weights",
    "multiview": "generating views",
    "reconstruct": "reconstructing",
    "texture": "texturing",
    "refine": "refining texture",
    "export": "writing",
}


class BatchProgress:
    """One bar for the batch and one for the current stage (diffusion and refinement steps, downloads)."""

    def __init__(self, total: int, *, enabled: bool = True):
        self.total = total
        self.verbose = enabled
        self.live = enabled and console.is_terminal
        self._lock = threading.Lock()
        self._bar = None
        self._batch_task = None
        self._stage_task = None
        self._stage_name: str | None = None

    def __enter__(self) -> "BatchProgress":
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console, transient=True,
            )
            self._bar.start()
            if self.total > 1:
                self._batch_task = self._bar.add_task("images", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def stage(self, name: str, done: int, total: int | None) -> None:
        """Job progress callback: ``done`` of ``total`` units of stage ``name`` (a new name starts a new bar)."""
        if self._bar is None:
            return
        with self._lock:
            if self._bar is None:
                return
            if self._stage_name != name:
                if self._stage_task is not None:
                    self._bar.remove_task(self._stage_task)
                self._stage_task = self._bar.add_task(STAGE_LABELS.get(name, name), total=total)
                self._stage_name = name
            self._bar.update(self._stage_task, completed=done, total=total)

    def download(self, done: int, total: int | None) -> None:
        self.stage("download", done, total)

    def job_done(self, job: "Job") -> None:
        if job.status == "failed":
            error_line(job.error_line())
        elif job.status == "suspect":
            q = job.quality
            warn_line(f"{job.name}: suspect: PSNR {q['psnr']} dB, silhouette IoU {q['iou']} against its views")
        elif self.verbose and not self.live:
            # Not a terminal (a log file, CI): one line per finished input, as it finishes.
            where = ", ".join(job.outputs.shown(p) for p in job.files[:1]) or ("stdout" if job.outputs.mesh_to else "")
            console.print(f"{job.name}: {job.status} {where} ({job.seconds:.1f} s)", markup=False, soft_wrap=True)
        if self._bar is not None and self._batch_task is not None:
            self._bar.advance(self._batch_task)

    def summary(self, jobs: list["Job"], *, interrupted: bool = False) -> None:
        if not self.verbose or not jobs:
            return
        ok = sum(j.status in ("ok", "suspect") for j in jobs)
        suspect = sum(j.status == "suspect" for j in jobs)
        failed = sum(j.status == "failed" for j in jobs)
        skipped = sum(j.status == "skipped" for j in jobs)
        if self.total > 1:
            from rich.table import Table

            table = Table(title=None, show_edge=False, pad_edge=False)
            table.add_column("input", overflow="fold")
            table.add_column("status")
            table.add_column("seconds", justify="right")
            table.add_column("output / error", overflow="fold")
            style = {"ok": "green", "suspect": "magenta", "failed": "red", "skipped": "yellow", "pending": "dim"}
            for j in jobs:
                detail = j.error if j.status == "failed" else (j.outputs.shown(j.outputs.mesh) if j.outputs.mesh else "stdout")
                table.add_row(j.name, f"[{style[j.status]}]{j.status}[/]", f"{j.seconds:.1f}", detail)
            console.print(table)
        elif ok:
            parts = ", ".join(f"{name} {sec:.2f}" for name, sec in jobs[0].timings.items())
            console.print(f"{jobs[0].name}: {jobs[0].seconds:.2f} s ({parts})", markup=False, soft_wrap=True)
        if self.total == 1 and not interrupted:  # one input: its error line (or its times) says it all
            return
        tail = " (interrupted)" if interrupted else ""
        marked = f" ({suspect} suspect)" if suspect else ""
        console.print(f"{ok} done{marked}, {failed} failed, {skipped} skipped of {self.total}{tail}", markup=False)
