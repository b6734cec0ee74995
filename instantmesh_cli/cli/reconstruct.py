"""``imesh reconstruct VIEWS... -o out.glb``: a mesh from your own multi-view images (no diffusion)."""

from __future__ import annotations

from typing import Annotated, List

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console, ensure_writable, write_stdout_bytes
from instantmesh_cli.errors import UsageError

D = opt.DEFAULTS


@app.command(rich_help_panel=opt.MAKE, epilog=(
    "Examples:\n"
    "  imesh reconstruct views.png -o mesh.glb\n"
    "  imesh reconstruct v0.png v1.png v2.png v3.png v4.png v5.png -o mesh.obj\n"
    "  imesh reconstruct views.png -o print.ply --no-texture --watertight"
))
def reconstruct(
    views: Annotated[List[str], typer.Argument(
        metavar="VIEWS",
        help="One 3×2 view grid (640×960, Zero123++ layout), or 6 square view images in camera order "
        "(azimuth 30, 90, 150, 210, 270, 330), or 4 with --views 4 (azimuth 30, 150, 270, 330).")],
    output: opt.MeshOutput,
    fmt: opt.Format = None,
    json_out: opt.Json = False,
    quiet: opt.Quiet = False,
    model: opt.Model = D.model,
    n_views: opt.Views = D.views,
    scale: opt.Scale = D.scale,
    no_cleanup: opt.NoCleanup = False,
    texture: opt.Texture = D.texture,
    texture_size: opt.TextureSize = D.texture_size,
    refine_texture: opt.RefineTexture = D.refine_texture,
    refine_steps: opt.RefineSteps = D.refine_steps,
    target_faces: opt.TargetFaces = D.target_faces,
    uv: opt.Uv = D.uv_method,
    quality: opt.Quality = D.quality,
    min_psnr: opt.MinPsnr = None,
    min_iou: opt.MinIou = None,
    preview: opt.Preview = False,
    remesh: opt.Remesh = D.remesh,
    watertight: opt.Watertight = D.watertight,
    device: opt.Device = D.device,
    dtype: opt.Dtype = D.dtype,
    offline: opt.Offline = False,
    weights_dir: opt.WeightsDir = None,
) -> None:
    """Reconstruct a textured mesh from multi-view images (no diffusion)."""
    from instantmesh_cli.chain.job import Job, JobOutputs
    from instantmesh_cli.chain.stages import VIEWS_TO_MESH
    from instantmesh_cli.cli.single import input_of, run_single
    from instantmesh_cli.inputs import plan_outputs, single_item

    options = opt.options_from(locals(), views=n_views)
    if len(views) not in (1, 4, 6):
        raise UsageError(f"got {len(views)} images; give one 3×2 view grid or six view files (four with --views 4)")
    if views.count("-") > 1 or ("-" in views and len(views) > 1):
        raise UsageError("'-' (a grid's bytes on stdin) cannot be combined with other view files")
    [target], ext = plan_outputs([single_item(views[0])], output, fmt, opt.MESH_FORMATS)
    if target is not None:
        ensure_writable(target)
    outputs = JobOutputs(mesh=target, mesh_format=ext, mesh_to=write_stdout_bytes if target is None else None)
    job = Job(name=views[0], inputs=[input_of(v) for v in views], seed=options.seed, options=options, outputs=outputs)
    run_single(options, job, VIEWS_TO_MESH, json_out=json_out, quiet=quiet)
    if not quiet and job.mesh is not None:
        mesh, report = job.mesh, job.texture_report
        colour = f"{options.texture_size}² texture" if mesh.is_textured else "vertex colours"
        refined = ""
        if report is not None and report.psnr_after is not None and report.refine_steps:
            refined = f", refined {report.psnr_before:.1f} → {report.psnr_after:.1f} dB on the views"
        console.print(f"{options.model}: {mesh.num_vertices} vertices, {mesh.num_faces} faces, {colour}{refined}",
                      soft_wrap=True, markup=False)
