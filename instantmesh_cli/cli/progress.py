"""Progress bars and the end-of-batch summary, on stderr."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from instantmesh_cli.cli.common import console, error_line

if TYPE_CHECKING:
    from instantmesh_cli.runner import ItemOutcome

STAGE_LABELS = {
    "download": "fetching weights",
    "multiview": "generating views",
    "refine": "refining texture",
}


class BatchProgress:
    """One bar for the batch and one for the current stage (diffusion steps, downloads)."""

    def __init__(self, total: int, *, enabled: bool = True):
        self.total = total
        self.enabled = enabled and console.is_terminal
        self.verbose = enabled
        self._lock = threading.Lock()
        self._bar = None
        self._batch_task = None
        self._stage_task = None
        self._stage_name: str | None = None

    def __enter__(self) -> "BatchProgress":
        if self.enabled:
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
        """Pipeline callback: ``done`` of ``total`` units of stage ``name``."""
        if self._bar is None:
            return
        with self._lock:
            if self._stage_name != name:
                if self._stage_task is not None:
                    self._bar.remove_task(self._stage_task)
                self._stage_task = self._bar.add_task(STAGE_LABELS.get(name, name), total=total)
                self._stage_name = name
            self._bar.update(self._stage_task, completed=done, total=total)

    def item_done(self, outcome: "ItemOutcome") -> None:
        if outcome.status == "failed":
            error_line(f"{outcome.item.name}: {outcome.error}")
        if self._bar is not None and self._batch_task is not None:
            self._bar.advance(self._batch_task)

    def summary(self, outcomes: list["ItemOutcome"], *, interrupted: bool = False) -> None:
        if not self.verbose or not outcomes:
            return
        from rich.table import Table

        ok = sum(o.status == "ok" for o in outcomes)
        failed = sum(o.status == "failed" for o in outcomes)
        skipped = sum(o.status == "skipped" for o in outcomes)
        if len(outcomes) > 1 or failed:
            table = Table(title=None, show_edge=False, pad_edge=False)
            table.add_column("input", overflow="fold")
            table.add_column("status")
            table.add_column("seconds", justify="right")
            table.add_column("output / error", overflow="fold")
            style = {"ok": "green", "failed": "red", "skipped": "yellow"}
            for o in outcomes:
                detail = o.error if o.status == "failed" else (str(o.output) if o.output else "stdout")
                table.add_row(o.item.name, f"[{style[o.status]}]{o.status}[/]", f"{o.seconds:.1f}", detail)
            console.print(table)
        tail = " (interrupted)" if interrupted else ""
        console.print(f"{ok} done, {failed} failed, {skipped} skipped of {self.total}{tail}", markup=False)
