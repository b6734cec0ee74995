"""``imesh selftest``: the whole chain on the bundled photo with tiny random weights, no downloads."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console, error_line

_STYLE = {"ok": "green", "failed": "red", "skipped": "yellow", "not run": "dim"}


@app.command(rich_help_panel=opt.SETUP, epilog=(
    "Examples:\n"
    "  imesh selftest\n"
    "  imesh selftest --device cuda --json\n"
    "  imesh selftest --save-weights tiny/ && imesh generate --example -o duck.glb --weights-dir tiny/"
))
def selftest(
    device: opt.Device = opt.DEFAULTS.device,
    save_weights: Annotated[Optional[Path], typer.Option(
        "--save-weights", metavar="DIR", file_okay=False, rich_help_panel=opt.WEIGHTS, show_default=False,
        help="Keep the tiny weights in DIR (new or empty): an ordinary --weights-dir folder that imesh generate runs on.",
    )] = None,
    json_out: opt.ReportJson = False,
    quiet: opt.ReportQuiet = False,
) -> None:
    """Does this install work? Run every stage on the bundled photo with tiny random weights (no download).

    The weights are written in the released layouts and loaded offline through the same code as
    the real ones, so a pass means torch, diffusers, transformers, the rasterizer, the UV unwrapper
    and the writers all work here. A table of stages (ok or failed, seconds) goes to stderr; the
    exit code is 1 if any stage failed.
    """
    from instantmesh_cli.cli.progress import BatchProgress
    from instantmesh_cli.selftest import check_weights_target, run_selftest

    if save_weights is not None:
        check_weights_target(save_weights)  # a usage error before any work
    with BatchProgress(1, enabled=not quiet) as progress:
        report = run_selftest(device=device, save_weights=save_weights, progress=progress.stage)
    if json_out:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
        sys.stdout.flush()
    if not quiet:
        _print(report)
    failure = report.failure
    if failure is not None:
        error_line(f"selftest failed at {failure.name}: {failure.detail}")
        raise typer.Exit(code=1)


def _print(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"imesh selftest on {escape(report.device or 'this machine')}: tiny random weights in the released "
                  "layouts, loaded offline; no downloads", soft_wrap=True)
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for s in report.stages:
        colour = _STYLE.get(s.status, "white")
        seconds = "" if s.seconds is None else f"{s.seconds:.2f}"
        table.add_row(s.name, f"[{colour}]{s.status}[/{colour}]", seconds, escape(s.detail))
    console.print(table)
    console.print(f"background removal: {escape(report.background_removal)}", soft_wrap=True)
    if report.weights_dir is not None:
        console.print(f"tiny weights kept in {escape(str(report.weights_dir))} "
                      f"(imesh generate --weights-dir {escape(str(report.weights_dir))} --offline runs on them)",
                      soft_wrap=True)
    if report.ok:
        console.print(f"[green]all stages ok[/green] in {report.seconds:.1f} s: this install works. "
                      "`imesh download` fetches the real weights (about 6 GB).", soft_wrap=True)

