"""``imesh bench``: per-stage timings and peak memory on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from instantmesh_cli import settings
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console
from instantmesh_cli.errors import UsageError


@app.command()
def bench(
    model: str = typer.Option(settings.DEFAULT_VARIANT, "--model", "-m", help=f"One of: {', '.join(settings.VARIANTS)}."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion steps (default: 75, the paper setting)."),
    scheduler: str = typer.Option("euler-a", "--scheduler", help="Diffusion sampler."),
    repeat: int = typer.Option(3, "--repeat", help="Measured runs after the warm-up; medians are reported."),
    batch: int = typer.Option(0, "--batch", help="Also measure images per minute for a batch of N images."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Full-size models with random weights (no download needed)."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also run the plain configuration (fp32, eager, every cube)."),
    cold_start: bool = typer.Option(True, "--cold-start/--no-cold-start", help="Also time a new process to its first GLB."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, fp16, bf16 or fp32."),
    texture_size: int = typer.Option(settings.DEFAULT_TEXTURE_SIZE, "--texture-size", help="Baked texture size."),
    refine_steps: int = typer.Option(settings.DEFAULT_REFINE_STEPS, "--refine-steps", help="Texture refinement steps."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the diffusion UNet (compile time is reported as model load)."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", file_okay=False, help="Folder made by `imesh download --to`."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Time every stage of photo → textured GLB on this machine (warm, medians) against the plain configuration."""
    if repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if batch < 0:
        raise UsageError("--batch must be 0 or more")
    from instantmesh_cli.bench import BenchOptions, format_report, run_bench

    opts = BenchOptions(
        model=model, steps=steps, scheduler=scheduler, repeat=repeat, batch=batch, random_weights=random_weights,
        baseline=baseline, cold_start=cold_start, device=device, dtype=dtype, texture_size=texture_size,
        refine_steps=refine_steps, compile=compile, weights_dir=weights_dir, offline=True if offline else None,
    )
    report = run_bench(opts, log=lambda line: console.print(f"[dim]{line}[/]"))
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        typer.echo(format_report(report))
