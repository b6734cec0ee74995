"""``imesh multiview INPUT -o views.png``: the six Zero123++ views as one 3×2 grid (640×960)."""

from __future__ import annotations

from typing import Annotated

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import png_output

D = opt.DEFAULTS


@app.command(rich_help_panel=opt.MAKE, epilog=(
    "Examples:\n"
    "  imesh multiview cutout.png -o views.png --save-tiles\n"
    "  imesh multiview photo.jpg -o grids/ --scheduler dpm++2m\n"
    "  imesh multiview photo.jpg -o views.png --seed 7 --steps 50 --guidance 3"
))
def multiview(
    input: Annotated[str, typer.Argument(help="Photo of one object (PNG, JPEG, WebP, ...), or - for stdin.")],
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="PATH", rich_help_panel=opt.IO, help="Grid image to write (.png), or a folder/.")],
    save_tiles: Annotated[bool, typer.Option(
        "--save-tiles", rich_help_panel=opt.IO, help="Also write the six 320×320 views, named by azimuth/elevation.")] = False,
    json_out: opt.Json = False,
    quiet: opt.Quiet = False,
    seed: opt.Seed = D.seed,
    steps: opt.Steps = D.steps,
    guidance: opt.Guidance = D.guidance,
    scheduler: opt.Scheduler = D.scheduler,
    no_rembg: opt.NoRembg = False,
    matting: opt.Matting = D.matting_model,
    foreground_ratio: opt.ForegroundRatio = D.foreground_ratio,
    device: opt.Device = D.device,
    dtype: opt.Dtype = D.dtype,
    low_vram: opt.LowVram = D.low_vram,
    compile: opt.Compile = D.compile,
    offline: opt.Offline = False,
    weights_dir: opt.WeightsDir = None,
) -> None:
    """Generate the six Zero123++ views of the object in INPUT as one 3×2 grid."""
    from instantmesh_cli.chain.job import Job, JobOutputs, derive_seed
    from instantmesh_cli.chain.stages import PHOTO_TO_VIEWS
    from instantmesh_cli.cli.single import input_of, run_single

    options = opt.options_from(locals())
    target = png_output(output, input, stem_suffix="_views")
    job = Job(
        name=input, inputs=[input_of(input)], seed=derive_seed(seed, input), options=options,
        outputs=JobOutputs(views=target, view_tiles=save_tiles),
    )
    run_single(options, job, PHOTO_TO_VIEWS, json_out=json_out, quiet=quiet)
