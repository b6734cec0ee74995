"""``imesh generate``: the whole chain for one image or thousands."""

from __future__ import annotations

import sys

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import warn_line, write_stdout_bytes
from instantmesh_cli.errors import UsageError

D = opt.DEFAULTS


def _read_list(from_list: str, inputs: list[str]) -> list[str]:
    from instantmesh_cli.inputs import read_list

    if from_list == "-":
        if "-" in inputs:
            raise UsageError("stdin cannot carry both a path list and image bytes")
        return read_list(sys.stdin)
    try:
        with open(from_list, encoding="utf-8") as fh:
            return read_list(fh)
    except OSError as exc:
        raise UsageError(f"cannot read --from-list {from_list}: {exc.strerror or exc}") from None


def worker_devices(gpus: str | None, workers: int, device: str, *, always: bool = False) -> list[str]:
    """The devices of the worker processes (one entry per process), or [] to run in this process
    (one worker on one device, unless ``always``)."""
    if gpus is None and workers == 1 and not always:
        return []
    if gpus is not None:
        from instantmesh_cli.chain.workers import parse_gpus

        if device not in ("auto", "cuda"):
            raise UsageError("--gpus chooses the devices; drop --device")
        base = parse_gpus(gpus)
    else:
        from instantmesh_cli.device import resolve_device

        base = [str(resolve_device(device))]
    return [d for d in base for _ in range(workers)]


@app.command(rich_help_panel=opt.MAKE, epilog=(
    "Examples:\n"
    "  imesh generate --example -o duck.glb\n"
    "  imesh generate photo.png -o photo.obj --texture-size 2048 --uv xatlas\n"
    "  imesh generate photos/ -o meshes/ --json --skip-existing\n"
    "  find shots -name '*.jpg' | imesh generate --from-list - -o out/\n"
    "  imesh generate s3://bucket/photos/ -o s3://bucket/meshes/ --ray auto --json"
))
def generate(
    ctx: typer.Context,
    inputs: opt.Inputs = None,
    output: opt.MeshOutput = ...,
    example: opt.Example = False,
    fmt: opt.Format = None,
    recursive: opt.Recursive = False,
    from_list: opt.FromList = None,
    skip_existing: opt.SkipExisting = False,
    save_views: opt.SaveViews = False,
    save_cutout: opt.SaveCutout = False,
    json_lines: opt.Json = False,
    quiet: opt.Quiet = False,
    seed: opt.Seed = D.seed,
    steps: opt.Steps = D.steps,
    guidance: opt.Guidance = D.guidance,
    scheduler: opt.Scheduler = D.scheduler,
    no_rembg: opt.NoRembg = False,
    matting: opt.Matting = D.matting_model,
    foreground_ratio: opt.ForegroundRatio = D.foreground_ratio,
    model: opt.Model = D.model,
    views: opt.Views = D.views,
    scale: opt.Scale = D.scale,
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
    contact_sheet: opt.ContactSheet = False,
    remesh: opt.Remesh = D.remesh,
    watertight: opt.Watertight = D.watertight,
    device: opt.Device = D.device,
    dtype: opt.Dtype = D.dtype,
    low_vram: opt.LowVram = D.low_vram,
    compile: opt.Compile = D.compile,
    gpus: opt.Gpus = None,
    workers: opt.Workers = 1,
    overlap: opt.Overlap = True,
    ray: opt.Ray = None,
    ray_actors: opt.RayActors = None,
    server: opt.Server = None,
    no_server: opt.NoServer = False,
    offline: opt.Offline = False,
    weights_dir: opt.WeightsDir = None,
) -> None:
    """Turn photos into textured meshes (the whole chain)."""
    from instantmesh_cli.cli.batch import run_photo_batch
    from instantmesh_cli.inputs import expand_inputs, plan_outputs

    options = opt.options_from(locals())
    inputs = list(inputs or [])
    listed = _read_list(from_list, inputs) if from_list is not None else []
    if not inputs and not listed and not example:
        raise UsageError("give at least one input image, folder or pattern (or --from-list, or --example)")
    if ray is not None:
        if gpus is not None or workers != 1:
            raise UsageError("--ray places the workers itself; drop --gpus / --workers (see --ray-actors)")
        if example:
            raise UsageError("--example is a photo inside this installation, not on the cluster's storage; drop --ray")
        from instantmesh_cli.cli.batch import run_ray_batch

        code = run_ray_batch(
            options, inputs + listed, output, fmt, address=ray, actors=ray_actors, recursive=recursive,
            skip_existing=skip_existing, save_views=save_views, save_cutout=save_cutout, json_lines=json_lines, quiet=quiet,
            contact_sheet=contact_sheet,
        )
        if code:
            raise typer.Exit(code=code)
        return
    if ray_actors is not None:
        raise UsageError("--ray-actors goes with --ray")
    items = expand_inputs(inputs, recursive=recursive, from_list=listed) if inputs or listed else []
    if example:
        from instantmesh_cli.examples import example_photo
        from instantmesh_cli.inputs import InputItem

        photo = example_photo()
        items.append(InputItem(path=photo, name=photo.name, stem=photo.stem))
    outputs, ext = plan_outputs(items, output, fmt, opt.MESH_FORMATS)
    if outputs == [None] and (save_views or save_cutout or preview or contact_sheet):
        raise UsageError("--save-views / --save-cutout / --preview / --contact-sheet need a file or folder output, not -o -")
    if workers < 1:
        raise UsageError(f"--workers must be 1 or more, got {workers}")
    devices = worker_devices(gpus, workers, device)
    if devices and outputs == [None]:
        raise UsageError("-o - (GLB on stdout) runs in this process; drop --gpus / --workers")
    if devices and server and not no_server:
        raise UsageError("--gpus / --workers run workers here; drop them to use --server")
    remote = None
    if not devices and not no_server:
        from instantmesh_cli.serve.client import connect
        from instantmesh_cli.serve.fields import fields_from_params

        remote = connect(server, options, note=lambda line: None if quiet else warn_line(line))
        if remote is not None:
            remote.fields = fields_from_params(ctx.params)
    try:
        code = run_photo_batch(
            options, items, outputs, ext, skip_existing=skip_existing, save_views=save_views, save_cutout=save_cutout,
            json_lines=json_lines, quiet=quiet, overlap=overlap, write_stdout=write_stdout_bytes, devices=devices,
            contact_sheet=contact_sheet, remote=remote,
        )
    finally:
        if remote is not None:
            remote.close()
    if code:
        raise typer.Exit(code=code)
