"""Progress on stderr: live bars on a terminal, one line per finished input elsewhere; the summary.

On a terminal a run shows, as it goes: the batch (images n/N, when there are several),
one line per worker thread with the stage it is in — reading, removing background,
loading models, generating views n/steps, reconstructing, refining texture n/steps,
texturing, writing — and one bar per weights file being downloaded. Stages are
announced by the chain itself (``job.report``), so every command shows the same.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from instantmesh_cli.cli.common import console, error_line, warn_line

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job

STAGE_LABELS = {
    "weights": "writing tiny weights",
    "read": "reading",
    "prepare": "removing background",
    "load": "loading models",
    "multiview": "generating views",
    "reconstruct": "reconstructing",
    "mesh": "repairing mesh",
    "texture": "texturing",
    "refine": "refining texture",
    "export": "writing",
    "check": "reading the output back",
}


def _count_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Count(ProgressColumn):
        """``12/75`` for steps, ``1.2/3.4 GB`` for downloads, nothing while a stage has no count."""

        def render(self, task) -> Text:
            if task.total is None:
                return Text("")
            if task.fields.get("unit") == "bytes":
                return Text(f"{_human(task.completed)}/{_human(task.total)}", style="progress.download")
            return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")

    return Count()


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class BatchProgress:
    """Live progress for one command run: the batch, the stage each worker thread is in, downloads."""

    def __init__(self, total: int, *, enabled: bool = True):
        self.total = total
        self.verbose = enabled
        self.live = enabled and console.is_terminal
        self._lock = threading.Lock()
        self._bar = None
        self._batch_task = None
        # Stages run in several threads at once in a batch (the next image is read while this
        # one is on the GPU): one line per thread, so that neither overwrites the other.
        self._stage_tasks: dict[int, tuple[str, int]] = {}
        self._downloads: dict[str, int] = {}

    def __enter__(self) -> "BatchProgress":
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), _count_column(), TimeElapsedColumn(),
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
        """Job progress callback: ``done`` of ``total`` units of stage ``name`` (a new name starts a new line)."""
        if self._bar is None:
            return
        thread = threading.get_ident()
        with self._lock:
            if self._bar is None:
                return
            current = self._stage_tasks.get(thread)
            if current is None or current[0] != name:
                if current is not None:
                    self._bar.remove_task(current[1])
                if name != "load" and self._downloads:
                    for task in self._downloads.values():  # the models are loaded: their files are here
                        self._bar.remove_task(task)
                    self._downloads.clear()
                current = (name, self._bar.add_task(STAGE_LABELS.get(name, name), total=total))
                self._stage_tasks[thread] = current
            self._bar.update(current[1], completed=done, total=total)

    def download(self, file: str, done: int, total: int | None) -> None:
        """Weights download callback: one bar per file, kept until the models are loaded."""
        if self._bar is None:
            return
        with self._lock:
            if self._bar is None:
                return
            task = self._downloads.get(file)
            if task is None:
                task = self._bar.add_task(f"fetching {file}", total=total, unit="bytes")
                self._downloads[file] = task
            self._bar.update(task, completed=done, total=total)

    def job_done(self, job: "Job") -> None:
        if job.status == "failed":
            error_line(job.error_line())
        elif job.status == "suspect":
            q = job.quality
            warn_line(f"{job.name}: suspect: PSNR {q['psnr']} dB, silhouette IoU {q['iou']} against its views")
        elif self.verbose and not self.live and self.total > 1:
            # Not a terminal (a log file, CI): one line per finished input, as it finishes
            # (a single input gets its line from the summary, with the stage times).
            where = ", ".join(job.outputs.shown(p) for p in job.files[:1]) or ("stdout" if job.outputs.mesh_to else "")
            where = f" {where}" if where else ""
            console.print(f"{job.name}: {job.status}{where} ({job.seconds:.1f} s)", markup=False, soft_wrap=True)
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
            from rich.markup import escape
            from rich.table import Table

            table = Table(title=None, show_edge=False, pad_edge=False)
            table.add_column("input", overflow="fold")
            table.add_column("status")
            table.add_column("seconds", justify="right")
            table.add_column("output / error", overflow="fold")
            style = {"ok": "green", "suspect": "magenta", "failed": "red", "skipped": "yellow", "pending": "dim"}
            for j in jobs:
                detail = j.error if j.status == "failed" else (j.outputs.shown(j.outputs.mesh) if j.outputs.mesh else "stdout")
                table.add_row(escape(j.name), f"[{style[j.status]}]{j.status}[/]", f"{j.seconds:.1f}", escape(detail or ""))
            console.print(table)
        elif ok:
            parts = ", ".join(f"{name} {sec:.2f}" for name, sec in jobs[0].timings.items())
            console.print(f"{jobs[0].name}: {jobs[0].seconds:.2f} s ({parts})", markup=False, soft_wrap=True)
        if self.total == 1 and not interrupted:  # one input: its error line (or its times) says it all
            return
        tail = " (interrupted)" if interrupted else ""
        marked = f" ({suspect} suspect)" if suspect else ""
        console.print(f"{ok} done{marked}, {failed} failed, {skipped} skipped of {self.total}{tail}", markup=False)
