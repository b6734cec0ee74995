"""``imesh reconstruct VIEWS... -o out.glb``: a mesh from your own multi-view images (no diffusion)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console, warn_line
from instantmesh_cli.errors import ImeshError, UsageError
from instantmesh_cli.settings import DEFAULT_VARIANT

FORMATS = ("glb", "obj", "ply")


def resolve_mesh_output(output: str, fmt: str | None, stem: str) -> tuple[Path | None, str]:
    """(path or None for stdout, format), checked before any work is done."""
    if fmt is not None and fmt.lower() not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    fmt = fmt.lower() if fmt else None
    if output == "-":
        if fmt not in (None, "glb"):
            raise UsageError("-o - writes a binary GLB to stdout; --format must be glb")
        return None, "glb"
    path = Path(output)
    if output.endswith(("/", os.sep)) or path.is_dir():
        path = path / f"{stem}.{fmt or 'glb'}"
    suffix = path.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        if fmt is not None and fmt != suffix:
            raise UsageError(f"output {output} ends in .{suffix} but --format is {fmt}")
        fmt = suffix
    elif suffix:
        raise UsageError(f"output {output}: unknown mesh format .{suffix}; use .glb, .obj or .ply")
    else:
        fmt = fmt or "glb"
        path = path.with_name(f"{path.name}.{fmt}")
    existing = path.parent if str(path.parent) else Path(".")
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ImeshError(f"cannot write {path}: {existing} is not a writable folder")
    return path, fmt


@app.command()
def reconstruct(
    views: List[str] = typer.Argument(
        ..., metavar="VIEWS...",
        help="One 3×2 view grid (640×960, Zero123++ layout), or 6 square view images in camera order "
        "(azimuth 30, 90, 150, 210, 270, 330), or 4 with --views 4 (azimuth 30, 150, 270, 330).",
    ),
    output: str = typer.Option(..., "-o", "--output", help="Output mesh (.glb, .obj, .ply), a folder/, or - (GLB on stdout)."),
    model: str = typer.Option(
        DEFAULT_VARIANT, "--model", "-m",
        help="instant-mesh-large, instant-mesh-base (FlexiCubes) or instant-nerf-large, instant-nerf-base (marching cubes).",
    ),
    n_views: int = typer.Option(6, "--views", help="Views fed to the model: 6, or 4 (views 0, 2, 4, 5)."),
    scale: float = typer.Option(
        1.0, "--scale", help="Camera distance factor; below 1 makes the object smaller (use if it gets cropped)."
    ),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="Encoder/transformer precision: auto (fp16 on CUDA), fp32, fp16, bf16."),
    fmt: Optional[str] = typer.Option(None, "--format", help="glb, obj or ply (default: from the output name)."),
    no_texture: bool = typer.Option(
        False, "--no-texture",
        help="Vertex colours instead of a texture map. Texturing is not part of this command yet, "
        "so the mesh always carries vertex colours.",
    ),
    no_cleanup: bool = typer.Option(False, "--no-cleanup", help="Keep floating pieces (no mesh clean-up)."),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", file_okay=False, help="Folder from `imesh download --to` (default: $IMESH_WEIGHTS_DIR)."
    ),
    offline: bool = typer.Option(False, "--offline", help="Never download weights."),
) -> None:
    """Reconstruct a vertex-coloured mesh from multi-view images (no diffusion)."""
    from instantmesh_cli import settings

    variant = settings.get_variant(model)
    if n_views not in (4, 6):
        raise UsageError(f"--views must be 4 or 6, got {n_views}")
    if not scale > 0:
        raise UsageError(f"--scale must be positive, got {scale}")
    if len(views) not in (1, 4, 6):
        raise UsageError(f"got {len(views)} images; give one 3×2 view grid or six view files (four with --views 4)")
    target, mesh_format = resolve_mesh_output(output, fmt, Path(views[0]).stem)
    del no_texture  # vertex colours are the only output of this command for now

    from instantmesh_cli.export import encode_glb, export_mesh
    from instantmesh_cli.images import load_image
    from instantmesh_cli.reconstruction.inputs import views_from_images, views_to_tensor
    from instantmesh_cli.reconstruction.loading import load_model
    from instantmesh_cli.reconstruction.stage import reconstruct as run_stage
    from instantmesh_cli.reconstruction.stage import resolve_device, resolve_dtype

    images = [load_image(v) for v in views]
    picked = views_from_images(images, views, n_views)
    torch_device = resolve_device(device)
    compute_dtype = resolve_dtype(dtype, torch_device)
    net = load_model(
        variant.name, device=torch_device, compute_dtype=compute_dtype, offline=offline or None, weights_dir=weights_dir
    )
    result = run_stage(net, views_to_tensor(picked, net.cfg.input_size), scale=scale, clean=not no_cleanup)
    mesh = result.mesh
    if mesh.num_faces == 0:
        raise ImeshError("the reconstruction is empty (no surface found)", hint="check that the views show one object on white")
    if mesh.metadata.get("empty_shape_fallback"):
        warn_line("the model predicted no surface; the mesh is the official fallback shape, not the object")
    if target is None:
        sys.stdout.buffer.write(encode_glb(mesh))
        sys.stdout.buffer.flush()
    else:
        for path in export_mesh(mesh, target, mesh_format):
            typer.echo(str(path))
    t = result.timings
    console.print(
        f"{variant.name} on {torch_device}: {mesh.num_vertices} vertices, {mesh.num_faces} faces, vertex colours "
        f"(planes {t['planes']:.2f} s, surface {t['surface']:.2f} s)",
        soft_wrap=True, markup=False,
    )
