"""``imesh bench``: per-stage timings and peak memory on this machine."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from instantmesh_cli import settings
from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console
from instantmesh_cli.errors import UsageError

BENCH = "Measurements"


@app.command(rich_help_panel=opt.SETUP, epilog=(
    "Examples:\n"
    "  imesh bench --random-weights\n"
    "  imesh bench --random-weights --repeat 3 --batch 20 --json\n"
    "  imesh bench --random-weights --server-workers 1,2 --batch 24\n"
    "  imesh bench --scheduler dpm++2m --no-baseline --no-cold-start"
))
def bench(
    model: opt.Model = opt.DEFAULTS.model,
    steps: opt.Steps = None,
    scheduler: opt.Scheduler = opt.DEFAULTS.scheduler,
    repeat: Annotated[int, typer.Option(
        "--repeat", metavar="N", rich_help_panel=BENCH, help="Measured runs after the warm-up; medians are reported.")] = 3,
    batch: Annotated[int, typer.Option(
        "--batch", metavar="N", rich_help_panel=BENCH, help="Also measure images per minute for a batch of N images.")] = 0,
    random_weights: Annotated[bool, typer.Option(
        "--random-weights", rich_help_panel=BENCH, help="Full-size models with random weights (no download needed).")] = False,
    baseline: Annotated[bool, typer.Option(
        "--baseline/--no-baseline", rich_help_panel=BENCH, help="Also run the plain configuration (fp32, eager, every cube).")] = True,
    cold_start: Annotated[bool, typer.Option(
        "--cold-start/--no-cold-start", rich_help_panel=BENCH, help="Also time a new process to its first GLB.")] = True,
    server_workers: Annotated[Optional[str], typer.Option(
        "--server-workers", metavar="N[,N…]", rich_help_panel=BENCH, show_default=False,
        help="Also start `imesh serve` with each worker count (e.g. 1,2): one generate call through it, and "
        "images per minute for --batch photos (12 when --batch is 0).")] = None,
    texture_size: opt.TextureSize = settings.DEFAULT_TEXTURE_SIZE,
    refine_steps: opt.RefineSteps = settings.DEFAULT_REFINE_STEPS,
    device: opt.Device = opt.DEFAULTS.device,
    dtype: opt.Dtype = opt.DEFAULTS.dtype,
    compile: opt.Compile = False,
    offline: opt.Offline = False,
    weights_dir: opt.WeightsDir = None,
    json_out: opt.ReportJson = False,
    quiet: opt.ReportQuiet = False,
) -> None:
    """Time every stage of photo → textured GLB on this machine (warm, medians) against the plain configuration."""
    if repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if batch < 0:
        raise UsageError("--batch must be 0 or more")
    counts: tuple[int, ...] = ()
    if server_workers:
        try:
            counts = tuple(int(part) for part in server_workers.split(","))
        except ValueError:
            counts = ()
        if not counts or min(counts) < 1:
            raise UsageError(f"--server-workers takes worker counts like 1,2, got {server_workers!r}")
    from instantmesh_cli.bench import BenchOptions, run_bench
    from instantmesh_cli.bench_report import format_report

    opts = BenchOptions(
        model=model, steps=steps, scheduler=scheduler, repeat=repeat, batch=batch, random_weights=random_weights,
        baseline=baseline, cold_start=cold_start, device=device, dtype=dtype, texture_size=texture_size,
        refine_steps=refine_steps, compile=compile, weights_dir=weights_dir, offline=True if offline else None,
        server_workers=counts,
    )
    report = run_bench(opts, log=(lambda line: None) if quiet else (lambda line: console.print(line, style="dim", markup=False)))
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        typer.echo(format_report(report))
