"""``imesh doctor``: environment report (torch/CUDA/GPU, nvdiffrast, weights, rembg, paths)."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


@app.command(rich_help_panel=opt.SETUP, epilog=(
    "Examples:\n"
    "  imesh doctor\n"
    "  imesh doctor --weights-dir /mnt/usb/imesh-weights --no-gpu-test\n"
    "  imesh doctor --json | jq '.checks[] | select(.status != \"ok\")'"
))
def doctor(
    weights_dir: opt.WeightsDir = None,
    no_gpu_test: Annotated[bool, typer.Option(
        "--no-gpu-test", rich_help_panel=opt.PERF, help="Skip building nvdiffrast and rasterizing a test triangle.")] = False,
    as_json: opt.ReportJson = False,
    quiet: opt.ReportQuiet = False,
) -> None:
    """Check this machine: Python, torch, CUDA, GPU memory, nvdiffrast, weights, rembg model, paths.

    Each line is ok, warn (works, but degraded or fetched on first use) or fail
    (a job will not run) with its fix; the exit code is 1 if anything fails.
    """
    from instantmesh_cli import doctor as checks_mod

    spinner = contextlib.nullcontext() if quiet else console.status("checking…", spinner="dots")
    with spinner as status:
        checks = checks_mod.run_checks(
            weights_dir=weights_dir, gpu_test=not no_gpu_test,
            on_start=None if (as_json or quiet) else (lambda name: status.update(f"checking {name}…")))
    if as_json:
        typer.echo(json.dumps({"checks": [c.to_dict() for c in checks],
                               "ok": checks_mod.exit_code(checks) == 0}, indent=1))
    else:
        _print(checks)
    code = checks_mod.exit_code(checks)
    if code:
        raise typer.Exit(code=code)


def _print(checks) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in checks:
        colour = _STYLE.get(c.status, "white")
        detail = escape(c.detail) + (f"\n[dim]fix: {escape(c.fix)}[/dim]" if c.fix and c.status != "ok" else "")
        table.add_row(f"[{colour}]{c.status:<4}[/{colour}]", escape(c.name), detail)
    out = Console(highlight=False)  # the report is the command's output: stdout
    out.print(table)
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}
    out.print(f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures")
