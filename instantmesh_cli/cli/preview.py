"""``imesh preview MESH -o x.png|x.gif|x.mp4``: a picture or a turntable of any mesh file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console, ensure_writable
from instantmesh_cli.errors import ImeshError, UsageError

OUTPUT_SUFFIXES = (".png", ".gif", ".mp4")
DEFAULT_TILE, DEFAULT_FRAME, DEFAULT_FRAMES = 256, 512, 120
# Every frame is held in memory before the file is written: 3 GiB of pixels at most.
MAX_TURNTABLE_BYTES = 3 << 30


def check_options(output: str, size: Optional[int], frames: Optional[int], elevation: float, fps: float,
                  photo: Optional[str]) -> tuple[Path, str]:
    """(output path, kind 'png'|'gif'|'mp4'), every option checked before any work (usage errors, exit 2)."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"output {output} must end in .png (a sheet), .gif or .mp4 (a turntable)")
    kind = suffix.lstrip(".")
    if size is not None and not 16 <= size <= 2048:
        raise UsageError(f"--size must be between 16 and 2048, got {size}")
    if not -90.0 < elevation < 90.0:
        raise UsageError(f"--elevation must be strictly between -90 and 90 degrees, got {elevation:g}")
    if kind == "png":
        if frames is not None:
            raise UsageError("--frames is for a turntable: write .gif or .mp4")
    else:
        if frames is not None and not 1 <= frames <= 1000:
            raise UsageError(f"--frames must be between 1 and 1000, got {frames}")
        if photo is not None:
            raise UsageError("--input is shown on the .png sheet only")
        if not 1.0 <= fps <= 60.0:
            raise UsageError(f"--fps must be between 1 and 60, got {fps:g}")
        side, n = size or DEFAULT_FRAME, frames or DEFAULT_FRAMES
        if n * side * side * 3 > MAX_TURNTABLE_BYTES:
            raise UsageError(f"{n} frames of {side}×{side} is too large a turntable; use fewer --frames or a smaller --size")
        if kind == "mp4" and side % 2:
            raise UsageError(f"an .mp4 needs an even --size (H.264 with 4:2:0 colour), got {size}")
    ensure_writable(path)
    return path, kind


@app.command(rich_help_panel=opt.LOOK)
def preview(
    mesh: str = typer.Argument(
        ..., metavar="MESH",
        help="Mesh file: .glb/.gltf (read +Y up, as glTF says), .obj, .ply or .stl (assumed +Y up, front on +Z).",
    ),
    output: str = typer.Option(
        ..., "-o", "--output",
        help="preview.png (the mesh from six sides), or turntable.gif / turntable.mp4 (one full turn).",
    ),
    photo: Optional[str] = typer.Option(None, "--input", metavar="PHOTO", help="Put this photo first on the .png sheet."),
    size: Optional[int] = typer.Option(
        None, "--size", metavar="N", help=f"Tile side on the sheet (default {DEFAULT_TILE}) or frame side of a turntable "
        f"(default {DEFAULT_FRAME}), 16-2048 pixels.",
    ),
    frames: Optional[int] = typer.Option(
        None, "--frames", metavar="N", help=f"Turntable frames for one turn, 1-1000 (default {DEFAULT_FRAMES})."
    ),
    elevation: float = typer.Option(20.0, "--elevation", metavar="DEG", help="Camera height in degrees above the equator."),
    fps: float = typer.Option(25.0, "--fps", help="Turntable frames per second, 1-60."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda or cuda:N."),
) -> None:
    """Render a mesh file: a sheet of six azimuths (.png) or a turntable (.gif, .mp4)."""
    import time

    from instantmesh_cli.fileio import atomic_path
    from instantmesh_cli.images import load_image
    from instantmesh_cli.preview.meshfile import load_mesh
    from instantmesh_cli.preview.sheet import preview_sheet
    from instantmesh_cli.preview.turntable import require_video, turntable, write_animation
    from instantmesh_cli.device import resolve_device

    path, kind = check_options(output, size, frames, elevation, fps, photo)
    if kind == "mp4":
        require_video()
    torch_device = resolve_device(device)
    start = time.perf_counter()
    pm = load_mesh(mesh)
    picture = load_image(photo) if photo is not None else None
    try:
        if kind == "png":
            sheet = preview_sheet(pm, picture, size or DEFAULT_TILE, elevation=elevation, device=torch_device)
            with atomic_path(path) as tmp:
                sheet.save(tmp, format="PNG")
            what = f"sheet {sheet.width}×{sheet.height}"
        else:
            n = frames or DEFAULT_FRAMES
            side = size or DEFAULT_FRAME
            write_animation(turntable(pm, n, side, elevation, device=torch_device), path, fps=fps)
            what = f"{n} frames of {side}×{side}"
    except OSError as exc:
        raise ImeshError(f"cannot write {path}: {exc.strerror or exc}") from None
    typer.echo(str(path))
    console.print(
        f"{mesh}: {pm.num_faces} faces → {path.name}, {what} on {torch_device} in {time.perf_counter() - start:.1f} s",
        soft_wrap=True, markup=False,
    )
