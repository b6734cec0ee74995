"""``imesh reconstruct VIEWS... -o out.glb``: a mesh from your own multi-view images (no diffusion)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import check_texture_options, console, ensure_writable, warn_line
from instantmesh_cli.errors import ImeshError, UsageError
from instantmesh_cli.settings import DEFAULT_REFINE_STEPS, DEFAULT_TEXTURE_SIZE, DEFAULT_VARIANT

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
    ensure_writable(path)
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
    texture: bool = typer.Option(True, "--texture/--no-texture", help="Bake a UV texture (default) or keep vertex colours."),
    texture_size: int = typer.Option(DEFAULT_TEXTURE_SIZE, "--texture-size", help="Texture width and height in pixels."),
    refine_texture: bool = typer.Option(
        True, "--refine-texture/--no-refine-texture", help="Fit the colours to the given views before baking."
    ),
    refine_steps: int = typer.Option(DEFAULT_REFINE_STEPS, "--refine-steps", help="Texture refinement steps."),
    target_faces: Optional[int] = typer.Option(None, "--target-faces", help="Faces kept for the UV atlas (default 40000; 0 keeps all)."),
    uv: Optional[str] = typer.Option(None, "--uv", help="UV unwrapping: box (fast, default) or xatlas (fewer seams, ~1-2 s)."),
    no_cleanup: bool = typer.Option(False, "--no-cleanup", help="Keep floating pieces (no mesh clean-up)."),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", file_okay=False, help="Folder from `imesh download --to` (default: $IMESH_WEIGHTS_DIR)."
    ),
    offline: bool = typer.Option(False, "--offline", help="Never download weights."),
) -> None:
    """Reconstruct a textured mesh from multi-view images (no diffusion)."""
    from instantmesh_cli import settings

    variant = settings.get_variant(model)
    if n_views not in (4, 6):
        raise UsageError(f"--views must be 4 or 6, got {n_views}")
    if not scale > 0:
        raise UsageError(f"--scale must be positive, got {scale}")
    if len(views) not in (1, 4, 6):
        raise UsageError(f"got {len(views)} images; give one 3×2 view grid or six view files (four with --views 4)")
    check_texture_options(texture_size, refine_steps, target_faces, uv)
    target, mesh_format = resolve_mesh_output(output, fmt, Path(views[0]).stem)

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
    tensor = views_to_tensor(picked, net.cfg.input_size)
    result = run_stage(net, tensor, scale=scale, clean=not no_cleanup)
    mesh = result.mesh
    if mesh.num_faces == 0:
        raise ImeshError("the reconstruction is empty (no surface found)", hint="check that the views show one object on white")
    if mesh.metadata.get("empty_shape_fallback"):
        warn_line("the model predicted no surface; the mesh is the official fallback shape, not the object")
    steps = refine_steps if refine_texture else 0
    report = None
    if texture or steps > 0:
        from instantmesh_cli.texture import texture_mesh

        mesh, report = texture_mesh(
            mesh, result.planes, net, tensor[0], views=n_views, scale=scale, refine_steps=steps,
            texture_size=texture_size, target_faces=target_faces, uv_method=uv, bake=texture,
        )
    if target is None:
        sys.stdout.buffer.write(encode_glb(mesh))
        sys.stdout.buffer.flush()
    else:
        for path in export_mesh(mesh, target, mesh_format):
            typer.echo(str(path))
    t = result.timings
    colour = f"{texture_size}² texture" if mesh.is_textured else "vertex colours"
    refined = ""
    if report is not None and report.psnr_after is not None and report.refine_steps:
        refined = f", refined {report.psnr_before:.1f} → {report.psnr_after:.1f} dB on the views"
    console.print(
        f"{variant.name} on {torch_device}: {mesh.num_vertices} vertices, {mesh.num_faces} faces, {colour}{refined} "
        f"(planes {t['planes']:.2f} s, surface {t['surface']:.2f} s)",
        soft_wrap=True, markup=False,
    )
