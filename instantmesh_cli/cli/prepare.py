"""``imesh prepare INPUT -o cutout.png``: background removal and recentring only."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console, png_output, write_stdout_bytes
from instantmesh_cli.errors import UsageError

D = opt.DEFAULTS


@app.command(rich_help_panel=opt.MAKE, epilog=(
    "Examples:\n"
    "  imesh prepare photo.jpg -o cutout.png\n"
    "  imesh prepare photo.jpg -o cutouts/ --matting isnet-general-use --size 1024\n"
    "  cat photo.jpg | imesh prepare - -o - > cutout.png"
))
def prepare(
    input: Annotated[str, typer.Argument(help="Photo to cut out (PNG, JPEG, WebP, BMP, TIFF, GIF), or - for stdin.")],
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="PATH", rich_help_panel=opt.IO, help="Output .png, a folder/, or - for stdout.")],
    size: Annotated[Optional[int], typer.Option(
        "--size", metavar="N", rich_help_panel=opt.IO, help="Output side in pixels, 32-8192 (default: the object's own resolution, at most 2048).",
        show_default=False)] = None,
    json_out: opt.Json = False,
    quiet: opt.Quiet = False,
    no_rembg: opt.NoRembg = False,
    matting: opt.Matting = D.matting_model,
    foreground_ratio: opt.ForegroundRatio = D.foreground_ratio,
    offline: opt.Offline = False,
    weights_dir: opt.WeightsDir = None,
) -> None:
    """Remove the background and centre the object on a square RGBA canvas."""
    from instantmesh_cli.chain.job import Job, JobOutputs
    from instantmesh_cli.chain.stages import PHOTO_TO_CUTOUT
    from instantmesh_cli.cli.single import input_of, run_single

    options = opt.pipeline_options(no_rembg=no_rembg, matting=matting, foreground_ratio=foreground_ratio,
                                   offline=offline, weights_dir=weights_dir)
    if size is not None and not 32 <= size <= 8192:
        raise UsageError(f"--size must be between 32 and 8192, got {size}")
    target = None if output == "-" else png_output(output, input, what=" (the cut-out is an RGBA PNG)")
    outputs = JobOutputs(cutout=target, cutout_to=write_stdout_bytes if target is None else None, cutout_size=size)
    job = Job(name=input, inputs=[input_of(input)], seed=options.seed, options=options, outputs=outputs)
    run_single(options, job, PHOTO_TO_CUTOUT, json_out=json_out, quiet=quiet)
    if not quiet and job.prepared is not None:
        p = job.prepared
        how = f"background removed with {p.matting_model}" if p.background_removed else (
            "kept its alpha" if p.had_alpha else "no background removal")
        console.print(f"{job.name}: {p.image.size[0]}×{p.image.size[1]} cut-out, {how}", soft_wrap=True, markup=False)
