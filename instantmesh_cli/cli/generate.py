"""``imesh generate``: the whole chain for one image or thousands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from instantmesh_cli import settings
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import check_sampling_options, check_texture_options
from instantmesh_cli.errors import UsageError

FORMATS = ("glb", "obj", "ply")


@app.command()
def generate(
    inputs: List[str] = typer.Argument(
        None, help="Images, folders or glob patterns; '-' alone reads one image's bytes from stdin."
    ),
    output: str = typer.Option(..., "-o", "--output", help="out.glb (one input), DIR/ (any number), or - (GLB to stdout)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look for images in sub-folders too."),
    from_list: Optional[str] = typer.Option(None, "--from-list", metavar="FILE", help="Read input paths from FILE ('-' = stdin), one per line."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="glb, obj or ply (default: from -o, else glb)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose output already exists (resume a batch)."),
    json_lines: bool = typer.Option(False, "--json", help="One JSON object per input on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr (errors still shown)."),
    save_views: bool = typer.Option(False, "--save-views", help="Also write the six-view grid as {stem}_views.png."),
    save_cutout: bool = typer.Option(False, "--save-cutout", help="Also write the cut-out as {stem}_cutout.png."),
    model: str = typer.Option(settings.DEFAULT_VARIANT, "--model", "-m", help=f"One of: {', '.join(settings.VARIANTS)}."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion steps (default: 75 for euler-a)."),
    guidance: float = typer.Option(settings.DEFAULT_GUIDANCE, "--guidance", help="Classifier-free guidance scale."),
    seed: int = typer.Option(settings.DEFAULT_SEED, "--seed", help="Run seed; each image's seed is derived from it and the file name."),
    scheduler: str = typer.Option("euler-a", "--scheduler", help="Diffusion sampler: euler-a (75 steps), dpm++2m (25) or unipc (20)."),
    views: int = typer.Option(6, "--views", help="Views fed to the reconstruction model: 6 or 4."),
    scale: float = typer.Option(1.0, "--scale", help="Camera distance factor; < 1 shrinks objects that come out cropped."),
    no_rembg: bool = typer.Option(False, "--no-rembg", help="Never remove the background (automatic when the image has real alpha)."),
    matting: Optional[str] = typer.Option(None, "--matting", metavar="MODEL", help="rembg model for background removal."),
    foreground_ratio: float = typer.Option(settings.DEFAULT_FOREGROUND_RATIO, "--foreground-ratio", help="Object size in the condition image, (0, 1]."),
    texture: bool = typer.Option(True, "--texture/--no-texture", help="Bake a UV texture (default) or keep vertex colours."),
    texture_size: int = typer.Option(settings.DEFAULT_TEXTURE_SIZE, "--texture-size", help="Texture width and height in pixels."),
    refine_texture: bool = typer.Option(True, "--refine-texture/--no-refine-texture", help="Fit the colours to the six views before baking."),
    refine_steps: int = typer.Option(settings.DEFAULT_REFINE_STEPS, "--refine-steps", help="Texture refinement steps."),
    target_faces: Optional[int] = typer.Option(None, "--target-faces", help="Faces kept for the UV atlas (default 40000; 0 keeps all)."),
    uv: Optional[str] = typer.Option(None, "--uv", help="UV unwrapping: box (fast, default) or xatlas (fewer seams, ~1-2 s)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (fp16 on CUDA, fp32 on CPU), fp16, bf16 or fp32."),
    low_vram: bool = typer.Option(False, "--low-vram", help="Keep only the model part in use on the GPU."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", file_okay=False, help="Folder made by `imesh download --to`."),
    overlap: bool = typer.Option(True, "--overlap/--no-overlap", help="Overlap CPU work of neighbouring images with the GPU."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the diffusion UNet (pays off for large batches)."),
) -> None:
    """Turn photos into textured meshes (the whole chain)."""
    from instantmesh_cli.batch import expand_inputs, plan_outputs, read_list

    check_sampling_options(scheduler, steps, guidance, foreground_ratio)
    if not scale > 0:
        raise UsageError(f"--scale must be positive, got {scale}")
    check_texture_options(texture_size, refine_steps, target_faces, uv)
    listed: list[str] = []
    if from_list is not None:
        if from_list == "-":
            if inputs and "-" in inputs:
                raise UsageError("stdin cannot carry both a path list and image bytes")
            listed = read_list(sys.stdin)
        else:
            try:
                with open(from_list, encoding="utf-8") as fh:
                    listed = read_list(fh)
            except OSError as exc:
                raise UsageError(f"cannot read --from-list {from_list}: {exc.strerror or exc}") from None
    if not inputs and not listed:
        raise UsageError("give at least one input image, folder or pattern (or --from-list)")
    items = expand_inputs(inputs or [], recursive=recursive, from_list=listed)
    outputs, ext = plan_outputs(items, output, fmt, FORMATS)
    if outputs == [None] and (save_views or save_cutout):
        raise UsageError("--save-views / --save-cutout need a file or folder output, not -o -")

    from instantmesh_cli.pipeline import ImeshPipeline, PipelineOptions
    from instantmesh_cli.runner import BatchRunner, Extras

    options = PipelineOptions(
        model=model, steps=steps, guidance=guidance, seed=seed, scheduler=scheduler, views=views, scale=scale,
        remove_background=False if no_rembg else None, matting_model=matting, foreground_ratio=foreground_ratio,
        texture=texture, texture_size=texture_size, refine_texture=refine_texture, refine_steps=refine_steps,
        target_faces=target_faces, uv_method=uv, device=device, dtype=dtype, low_vram=low_vram,
        offline=True if offline else None, weights_dir=weights_dir, compile=compile,
    )
    show = not quiet
    from instantmesh_cli.cli.progress import BatchProgress

    with BatchProgress(len(items), enabled=show) as progress:
        pipe = ImeshPipeline(options, progress=progress.stage)
        runner = BatchRunner(
            pipe, items, outputs, ext, skip_existing=skip_existing, overlap=overlap,
            extras=Extras(save_views=save_views, save_cutout=save_cutout),
        )
        outcomes = []
        try:
            for outcome in runner:
                outcomes.append(outcome)
                progress.item_done(outcome)
                if json_lines:
                    sys.stdout.write(json.dumps(outcome.to_json()) + "\n")
                    sys.stdout.flush()
                elif outcome.status == "ok" and outcome.output is not None:
                    sys.stdout.write(f"{outcome.output}\n")
                    sys.stdout.flush()
        except KeyboardInterrupt:
            progress.stop()
            if show:
                progress.summary(outcomes, interrupted=True)
            raise
    if show:
        progress.summary(outcomes)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(code=1)
