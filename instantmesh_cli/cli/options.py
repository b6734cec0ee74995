"""Every command-line option, declared once: flag names, help, panel, choices, environment variable.

Commands take these as ``Annotated`` parameter types and map them onto
:class:`~instantmesh_cli.chain.options.PipelineOptions` with :func:`pipeline_options`;
values are range-checked once, by ``PipelineOptions.check``. Defaults come from
``PipelineOptions`` (``DEFAULTS``), never from literals here.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, List, Literal, Mapping, Optional

import typer

from instantmesh_cli import settings
from instantmesh_cli.chain.options import MESH_FORMATS, PipelineOptions

DEFAULTS = PipelineOptions()

IO = "Input and output"
SAMPLING = "Sampling (multi-view diffusion)"
MATTING = "Background removal"
RECON = "Reconstruction"
SURFACE = "Surface (pip install 'instantmesh-cli\\[meshlab]')"
TEXTURE = "Texture"
PERF = "Performance"
WEIGHTS = "Weights"
REPORT = "Report"

# Panels of `imesh --help`.
MAKE = "Make meshes"
LOOK = "Look at meshes"
SETUP = "Set up and check"

ModelName = Literal["instant-mesh-large", "instant-mesh-base", "instant-nerf-large", "instant-nerf-base"]
SchedulerName = Literal["euler-a", "dpm++2m", "unipc"]
UvName = Literal["box", "xatlas"]
DtypeName = Literal["auto", "fp32", "fp16", "bf16"]
FormatName = Literal["glb", "obj", "ply"]

# --- input and output ---------------------------------------------------------
Inputs = Annotated[Optional[List[str]], typer.Argument(
    metavar="INPUTS", help="Images, folders or glob patterns; '-' alone reads one image's bytes from stdin.", show_default=False)]
MeshOutput = Annotated[str, typer.Option(
    "-o", "--output", metavar="PATH", rich_help_panel=IO,
    help="out.glb|.obj|.ply (one input), DIR/ (any number), or - (binary GLB on stdout).")]
Format = Annotated[Optional[FormatName], typer.Option(
    "--format", "-f", rich_help_panel=IO, help="Mesh format (default: from -o, else glb).", show_default=False)]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", rich_help_panel=IO, help="Look for images in sub-folders too.")]
FromList = Annotated[Optional[str], typer.Option(
    "--from-list", metavar="FILE", rich_help_panel=IO, help="Read input paths from FILE ('-' = stdin), one per line.")]
Example = Annotated[bool, typer.Option(
    "--example", rich_help_panel=IO,
    help="Use the photo that ships with imesh (a rubber duck with transparency) as an input: no file needed.")]
SkipExisting = Annotated[bool, typer.Option(
    "--skip-existing", rich_help_panel=IO, help="Skip inputs whose output already exists (resume a batch).")]
SaveViews = Annotated[bool, typer.Option("--save-views", rich_help_panel=IO, help="Also write the six-view grid as {stem}_views.png.")]
SaveCutout = Annotated[bool, typer.Option("--save-cutout", rich_help_panel=IO, help="Also write the cut-out as {stem}_cutout.png.")]
Json = Annotated[bool, typer.Option("--json", rich_help_panel=IO, help="One JSON object per input on stdout, nothing else.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=IO, help="No progress or summary on stderr (errors still shown).")]
# The same two for commands whose output is one report (download, doctor, bench, selftest).
ReportJson = Annotated[bool, typer.Option("--json", rich_help_panel=REPORT, help="The report as one JSON object on stdout.")]
ReportQuiet = Annotated[bool, typer.Option(
    "--quiet", "-q", rich_help_panel=REPORT, help="No progress on stderr; the report and errors are still printed.")]

# --- sampling -----------------------------------------------------------------
Seed = Annotated[int, typer.Option(
    "--seed", metavar="N", rich_help_panel=SAMPLING,
    help="Run seed; each image's seed is derived from it and the file name (same in generate and multiview).")]
Steps = Annotated[Optional[int], typer.Option(
    "--steps", metavar="N", rich_help_panel=SAMPLING, help="Denoising steps (default: euler-a 75, dpm++2m 25, unipc 20).", show_default=False)]
Guidance = Annotated[float, typer.Option("--guidance", metavar="X", rich_help_panel=SAMPLING, help="Classifier-free guidance scale.")]
Scheduler = Annotated[SchedulerName, typer.Option("--scheduler", rich_help_panel=SAMPLING, help="Diffusion sampler.")]

# --- background removal -------------------------------------------------------
NoRembg = Annotated[bool, typer.Option(
    "--no-rembg", rich_help_panel=MATTING, help="Never remove the background (automatic when the image has real alpha), so no rembg model is needed.")]
Matting = Annotated[str, typer.Option(
    "--matting", metavar="MODEL", rich_help_panel=MATTING,
    help="rembg model: u2net, isnet-general-use, birefnet-general (best, slow), silueta (small), ...")]
ForegroundRatio = Annotated[float, typer.Option(
    "--foreground-ratio", metavar="F", rich_help_panel=MATTING, help="Object size in the condition image, (0, 1].")]

# --- reconstruction -----------------------------------------------------------
# The four names do not fit a type column of a 100-column terminal: NAME, and the choices in the help.
MODEL_CHOICES = "instant-mesh-large, instant-mesh-base (FlexiCubes), instant-nerf-large, instant-nerf-base (marching cubes)"
Model = Annotated[ModelName, typer.Option(
    "--model", "-m", metavar="NAME", rich_help_panel=RECON, help=f"Reconstruction model: {MODEL_CHOICES}.")]
Views = Annotated[int, typer.Option("--views", metavar="4|6", rich_help_panel=RECON, help="Views fed to the reconstruction model: 6, or 4 (views 0, 2, 4, 5).")]
Scale = Annotated[float, typer.Option("--scale", metavar="X", rich_help_panel=RECON, help="Camera distance factor; below 1 shrinks objects that come out cropped.")]
NoCleanup = Annotated[bool, typer.Option("--no-cleanup", rich_help_panel=RECON, help="Keep floating pieces (no mesh clean-up).")]

# --- surface (pymeshlab) -----------------------------------------------------
Remesh = Annotated[bool, typer.Option(
    "--remesh", rich_help_panel=SURFACE,
    help="Isotropic remeshing before the UV atlas: even triangles, about --target-faces of them.")]
Watertight = Annotated[bool, typer.Option(
    "--watertight", rich_help_panel=SURFACE,
    help="Repair into one closed, outward surface for 3D printing (holes capped, non-manifold edges removed).")]

# --- texture ------------------------------------------------------------------
Texture = Annotated[bool, typer.Option("--texture/--no-texture", rich_help_panel=TEXTURE, help="Bake a UV texture, or keep vertex colours.")]
TextureSize = Annotated[int, typer.Option("--texture-size", metavar="PX", rich_help_panel=TEXTURE, help="Texture width and height, 64-8192.")]
RefineTexture = Annotated[bool, typer.Option(
    "--refine-texture/--no-refine-texture", rich_help_panel=TEXTURE, help="Fit the colours to the views before baking.")]
RefineSteps = Annotated[int, typer.Option("--refine-steps", metavar="N", rich_help_panel=TEXTURE, help="Texture refinement steps.")]
TargetFaces = Annotated[Optional[int], typer.Option(
    "--target-faces", metavar="N", rich_help_panel=TEXTURE, help="Faces kept for the UV atlas (default 40000; 0 keeps all).", show_default=False)]
Uv = Annotated[Optional[UvName], typer.Option(
    "--uv", rich_help_panel=TEXTURE, help="UV unwrapping: box (fast, default) or xatlas (fewer seams, 1-2 s).", show_default=False)]

# --- quality and previews ---------------------------------------------------
QUALITY = "Quality and previews"
Quality = Annotated[bool, typer.Option(
    "--quality/--no-quality", rich_help_panel=QUALITY,
    help="Compare each mesh, as exported, with its six views (PSNR, silhouette IoU; in --json and the GLB).")]
MinPsnr = Annotated[Optional[float], typer.Option(
    "--min-psnr", metavar="DB", rich_help_panel=QUALITY, help="Mark outputs below this PSNR as suspect (exit 3).",
    show_default=False)]
MinIou = Annotated[Optional[float], typer.Option(
    "--min-iou", metavar="X", rich_help_panel=QUALITY, help="Mark outputs below this silhouette IoU as suspect (exit 3).",
    show_default=False)]
Preview = Annotated[bool, typer.Option(
    "--preview", rich_help_panel=QUALITY, help="Also write {stem}_preview.png: the photo and the exported mesh at six azimuths.")]
ContactSheet = Annotated[bool, typer.Option(
    "--contact-sheet", rich_help_panel=QUALITY,
    help="Keep contact_sheet.png in the output folder: every output's thumbnail, name and status, updated as the batch goes.")]

# --- performance --------------------------------------------------------------
Device = Annotated[str, typer.Option("--device", metavar="DEVICE", rich_help_panel=PERF, help="auto (CUDA when available), cpu, cuda or cuda:N.")]
Dtype = Annotated[DtypeName, typer.Option("--dtype", rich_help_panel=PERF, help="Compute precision; auto = fp16 on CUDA, fp32 on CPU.")]
LowVram = Annotated[bool, typer.Option("--low-vram", rich_help_panel=PERF, help="Keep only the model part in use on the GPU.")]
Compile = Annotated[bool, typer.Option("--compile", rich_help_panel=PERF, help="torch.compile the diffusion UNet's passes: the first run on a machine compiles for a minute or two, later processes read the cache (IMESH_CACHE_DIR/inductor); pays off for servers and large batches.")]
Gpus = Annotated[Optional[str], typer.Option(
    "--gpus", metavar="all|N|0,1", rich_help_panel=PERF,
    help="Spread a batch over one worker process per GPU (all, the first N, or these ids), each with its own models.",
    show_default=False)]
Workers = Annotated[int, typer.Option(
    "--workers", metavar="N", rich_help_panel=PERF,
    help="Worker processes per device (with --gpus, or on --device); generate with 1 runs in its own process.")]
Ray = Annotated[Optional[str], typer.Option(
    "--ray", metavar="auto|ADDRESS", rich_help_panel=PERF,
    help="Run the batch on a Ray cluster: auto (RAY_ADDRESS, else the cluster running here, else a new local one) "
         "or its address (host:6379, ray://host:10001). Inputs and -o may be URIs (s3://, gs://, file://...).",
    show_default=False)]
RayActors = Annotated[Optional[int], typer.Option(
    "--ray-actors", metavar="N", rich_help_panel=PERF,
    help="Actors with --ray (default: one per GPU of the cluster; one per node without GPUs).", show_default=False)]
Overlap = Annotated[bool, typer.Option(
    "--overlap/--no-overlap", rich_help_panel=PERF, help="Overlap CPU work of neighbouring images with the GPU.")]

# --- server -------------------------------------------------------------------
SERVE = "Server"
Server = Annotated[Optional[str], typer.Option(
    "--server", metavar="URL", rich_help_panel=PERF, envvar="IMESH_SERVER", show_envvar=True,
    help="Run on this imesh serve (unix:/path.sock or http://host:port); default: the running server on the "
         "default socket, else in this process.", show_default=False)]
NoServer = Annotated[bool, typer.Option(
    "--no-server", rich_help_panel=PERF, help="Run in this process even when a server is running.")]
Socket = Annotated[Optional[Path], typer.Option(
    "--socket", metavar="PATH", dir_okay=False, rich_help_panel=SERVE,
    help="Unix socket to listen on (default: $XDG_RUNTIME_DIR/imesh/serve.sock, else a private folder in the temp dir).",
    show_default=False)]
Host = Annotated[Optional[str], typer.Option(
    "--host", metavar="HOST", rich_help_panel=SERVE,
    help="Listen on TCP at this address too (instead of the socket unless --socket is given); other than loopback needs --token.",
    show_default=False)]
Port = Annotated[Optional[int], typer.Option(
    "--port", metavar="PORT", min=0, max=65535, rich_help_panel=SERVE, help="TCP port (with --host; default 8411; 0 picks a free one).",
    show_default=False)]
Token = Annotated[Optional[str], typer.Option(
    "--token", metavar="TOKEN", rich_help_panel=SERVE, envvar="IMESH_TOKEN", show_envvar=True,
    help="Require 'Authorization: Bearer TOKEN' on every request (prefer the variable: a flag shows in ps).",
    show_default=False)]
Ttl = Annotated[float, typer.Option(
    "--ttl", metavar="SECONDS", min=1, rich_help_panel=SERVE, help="Keep a finished job's results this long unless deleted.")]
MaxUpload = Annotated[float, typer.Option(
    "--max-upload", metavar="MB", min=0.001, rich_help_panel=SERVE, help="Largest upload accepted, in MB (2^20 bytes).")]

# --- weights ------------------------------------------------------------------
Offline = Annotated[bool, typer.Option(
    "--offline", rich_help_panel=WEIGHTS, envvar="HF_HUB_OFFLINE", show_envvar=True,
    help="Never touch the network; fail at once when weights are missing.")]
WeightsDir = Annotated[Optional[Path], typer.Option(
    "--weights-dir", metavar="DIR", file_okay=False, rich_help_panel=WEIGHTS, envvar="IMESH_WEIGHTS_DIR", show_envvar=True,
    help="Folder made by `imesh download --to` (or `imesh selftest --save-weights`).", show_default=False)]


def pipeline_options(
    *,
    model: str = DEFAULTS.model,
    views: int = DEFAULTS.views,
    scale: float = DEFAULTS.scale,
    no_cleanup: bool = False,
    seed: int = DEFAULTS.seed,
    steps: int | None = DEFAULTS.steps,
    guidance: float = DEFAULTS.guidance,
    scheduler: str = DEFAULTS.scheduler,
    no_rembg: bool = False,
    matting: str = DEFAULTS.matting_model,
    foreground_ratio: float = DEFAULTS.foreground_ratio,
    texture: bool = DEFAULTS.texture,
    texture_size: int = DEFAULTS.texture_size,
    refine_texture: bool = DEFAULTS.refine_texture,
    refine_steps: int = DEFAULTS.refine_steps,
    target_faces: int | None = DEFAULTS.target_faces,
    uv: str | None = DEFAULTS.uv_method,
    quality: bool = DEFAULTS.quality,
    min_psnr: float | None = DEFAULTS.min_psnr,
    min_iou: float | None = DEFAULTS.min_iou,
    preview: bool = DEFAULTS.preview,
    remesh: bool = DEFAULTS.remesh,
    watertight: bool = DEFAULTS.watertight,
    device: str = DEFAULTS.device,
    dtype: str = DEFAULTS.dtype,
    low_vram: bool = DEFAULTS.low_vram,
    compile: bool = DEFAULTS.compile,
    offline: bool = False,
    weights_dir: Path | None = DEFAULTS.weights_dir,
) -> PipelineOptions:
    """Command-line flags → checked :class:`PipelineOptions` (one usage error naming the first bad value)."""
    return PipelineOptions(
        model=model, views=views, scale=scale, clean=not no_cleanup, seed=seed, steps=steps, guidance=guidance,
        scheduler=scheduler, remove_background=False if no_rembg else None, matting_model=matting,
        foreground_ratio=foreground_ratio, texture=texture, texture_size=texture_size, refine_texture=refine_texture,
        refine_steps=refine_steps, target_faces=target_faces, uv_method=uv, quality=quality, min_psnr=min_psnr,
        min_iou=min_iou, preview=preview, remesh=remesh, watertight=watertight, device=device, dtype=dtype,
        low_vram=low_vram, compile=compile, offline=True if offline else None, weights_dir=weights_dir,
    ).check()


_FLAG_NAMES = frozenset(inspect.signature(pipeline_options).parameters)


def options_from(params: Mapping[str, object], **renamed: object) -> PipelineOptions:
    """A command's own parameters (its ``locals()`` on entry) that are pipeline flags → checked
    :class:`PipelineOptions`, so a command lists each flag once, in its signature. ``renamed``:
    flags a command names otherwise (``--views`` is ``n_views`` in ``reconstruct``)."""
    chosen = {k: v for k, v in params.items() if k in _FLAG_NAMES}
    chosen.update(renamed)
    return pipeline_options(**chosen)
