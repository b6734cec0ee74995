"""``imesh multiview INPUT -o views.png``: the six Zero123++ views as one 3×2 grid (640×960)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import SCHEDULER_NAMES, check_sampling_options, console, png_output
from instantmesh_cli.errors import ImeshError
from instantmesh_cli.images import DEFAULT_MATTING_MODEL
from instantmesh_cli.settings import DEFAULT_FOREGROUND_RATIO, DEFAULT_GUIDANCE, DEFAULT_SEED



def resolve_grid_output(output: str, input_name: str) -> Path:
    """The grid PNG to write, checked before any work: ``-o views.png`` or ``-o DIR/`` (→ DIR/<stem>_views.png)."""
    return png_output(output, input_name, stem_suffix="_views")


def _save_png(image, target: Path) -> None:
    from instantmesh_cli.fileio import atomic_path

    try:
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")
    except OSError as exc:
        raise ImeshError(f"cannot write {target}: {exc.strerror or exc}") from None


@app.command()
def multiview(
    input: str = typer.Argument(..., help="Photo of one object (PNG, JPEG, WebP, ...), or - for stdin."),
    output: str = typer.Option(..., "-o", "--output", help="Grid image to write (.png), or a folder/."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Denoising steps (default: 75 for euler-a, 25 for dpm++2m, 20 for unipc)."
    ),
    guidance: float = typer.Option(DEFAULT_GUIDANCE, "--guidance", help="Classifier-free guidance scale."),
    seed: int = typer.Option(
        DEFAULT_SEED, "--seed",
        help="Run seed; the image's seed is derived from it and the file name, as in `imesh generate`, "
        "so both commands give the same views.",
    ),
    scheduler: str = typer.Option(
        "euler-a", "--scheduler", help=f"Sampler: {', '.join(SCHEDULER_NAMES)} (faster, fewer steps)."
    ),
    dtype: str = typer.Option("auto", "--dtype", help="auto (fp16 on CUDA, fp32 on CPU), fp16, bf16 or fp32."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda or cuda:N."),
    low_vram: bool = typer.Option(False, "--low-vram", help="Keep only the model part in use on the GPU."),
    save_tiles: bool = typer.Option(
        False, "--save-tiles", help="Also write the six 320×320 views, named by azimuth/elevation."
    ),
    no_rembg: bool = typer.Option(False, "--no-rembg", help="Never remove the background (use the image's alpha)."),
    matting: str = typer.Option(DEFAULT_MATTING_MODEL, "--matting", metavar="MODEL", help="rembg model."),
    foreground_ratio: float = typer.Option(
        DEFAULT_FOREGROUND_RATIO, "--foreground-ratio", metavar="F", help="Object size in the condition image, (0, 1]."
    ),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", file_okay=False, help="Folder from `imesh download --to` (default: $IMESH_WEIGHTS_DIR)."
    ),
    offline: bool = typer.Option(False, "--offline", help="Never download weights or models."),
) -> None:
    """Generate the six Zero123++ views of the object in INPUT as one 3×2 grid."""
    check_sampling_options(scheduler, steps, guidance, foreground_ratio)
    target = resolve_grid_output(output, input)

    from instantmesh_cli.images import BackgroundRemover, load_image, prepare_image
    from instantmesh_cli.multiview.grid import split_grid, tile_filename
    from instantmesh_cli.multiview.loading import load_pipeline
    from instantmesh_cli.reconstruction.stage import resolve_device, resolve_dtype

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    label = "stdin" if input == "-" else input
    from instantmesh_cli.batch import derive_seed

    image_seed = derive_seed(seed, input)
    img = load_image(sys.stdin.buffer.read(), name=label) if input == "-" else load_image(input)
    remover = None if no_rembg else BackgroundRemover(matting, offline=offline or None)
    prepared = prepare_image(
        img,
        remove_background=False if no_rembg else None,
        remover=remover,
        foreground_ratio=foreground_ratio,
        name=label,
    )

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        fetch_task = bar.add_task("fetching multiview weights", total=None)

        def on_bytes(done: int, total: int | None) -> None:
            bar.update(fetch_task, completed=done, total=total)

        pipe = load_pipeline(
            device=torch_device, dtype=torch_dtype, low_vram=low_vram,
            offline=offline or None, weights_dir=weights_dir, progress=on_bytes,
        )
        bar.remove_task(fetch_task)
        loaded = time.perf_counter()
        task = bar.add_task("generating views", total=None)
        grid = pipe(
            prepared.image, steps=steps, guidance=guidance, seed=image_seed, scheduler=scheduler,
            callback=lambda done, total: bar.update(task, completed=done, total=total),
        )
    finished = time.perf_counter()

    _save_png(grid, target)
    typer.echo(str(target))
    if save_tiles:
        for i, view in enumerate(split_grid(grid)):
            tile = target.with_name(tile_filename(target.stem, i))
            _save_png(view, tile)
            typer.echo(str(tile))
    console.print(
        f"{label}: {grid.size[0]}×{grid.size[1]} grid, {scheduler}, seed {image_seed}, on {torch_device} "
        f"(load {loaded - started:.1f} s, generate {finished - loaded:.1f} s)",
        soft_wrap=True, markup=False,
    )
