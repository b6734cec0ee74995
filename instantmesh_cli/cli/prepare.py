"""``imesh prepare INPUT -o cutout.png``: background removal and recentring only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console, png_output
from instantmesh_cli.errors import ImeshError, UsageError
from instantmesh_cli.images import DEFAULT_MATTING_MODEL
from instantmesh_cli.settings import DEFAULT_FOREGROUND_RATIO


def resolve_output(output: str, input_name: str) -> Path | None:
    """The PNG path to write (None = stdout), checked before any work is done.

    ``-o -`` writes the PNG bytes to stdout; ``-o DIR/`` (or an existing folder) writes
    ``DIR/<input stem>.png``. The folder must be writable; the name must end in .png.
    """
    if output == "-":
        return None
    return png_output(output, input_name, what=" (the cut-out is an RGBA PNG)")


@app.command()
def prepare(
    input: str = typer.Argument(..., help="Photo to cut out (PNG, JPEG, WebP, BMP, TIFF, GIF), or - for stdin."),
    output: str = typer.Option(..., "-o", "--output", help="Output .png (or a folder/, or - for stdout)."),
    no_rembg: bool = typer.Option(
        False, "--no-rembg", help="Never remove the background (use the image's alpha, if any, as is)."
    ),
    matting: str = typer.Option(
        DEFAULT_MATTING_MODEL, "--matting", metavar="MODEL",
        help="rembg model for background removal: u2net, isnet-general-use, birefnet-general (best, slow), "
        "silueta (small)... (bria-rmbg is licensed for non-commercial use only).",
    ),
    foreground_ratio: float = typer.Option(
        DEFAULT_FOREGROUND_RATIO, "--foreground-ratio", metavar="F",
        help="Fraction of the square's side taken by the object, in (0, 1].",
    ),
    size: Optional[int] = typer.Option(
        None, "--size", metavar="N",
        help="Output side in pixels, 32-8192 (default: the object's own resolution, at most 2048).",
    ),
    offline: bool = typer.Option(False, "--offline", help="Never download the rembg model."),
) -> None:
    """Remove the background and centre the object on a square RGBA canvas."""
    from instantmesh_cli.fileio import atomic_path
    from instantmesh_cli.images import BackgroundRemover, load_image, prepare_image

    # Range checks here rather than typer's min=/max=: they raise our UsageError (exit 2, one line).
    if not 0.0 < foreground_ratio <= 1.0:
        raise UsageError(f"--foreground-ratio must be in (0, 1], got {foreground_ratio}")
    if size is not None and not 32 <= size <= 8192:
        raise UsageError(f"--size must be between 32 and 8192, got {size}")
    target = resolve_output(output, input)
    label = "stdin" if input == "-" else input
    if input == "-":
        img = load_image(sys.stdin.buffer.read(), name=label)
    else:
        img = load_image(input)
    remover = None if no_rembg else BackgroundRemover(matting, offline=offline or None)
    # The first background removal of a process loads the model (seconds; a download on
    # first use, which rembg reports itself). The spinner shows on terminals only and
    # leaves nothing behind, so stderr stays one line per outcome.
    with console.status(f"cutting out {label}…"):
        result = prepare_image(
            img,
            remove_background=False if no_rembg else None,
            remover=remover,
            foreground_ratio=foreground_ratio,
            size=size,
            name=label,
        )

    how = f"background removed with {result.matting_model}" if result.background_removed else (
        "kept its alpha" if result.had_alpha else "no background removal"
    )
    side = result.image.size[0]
    if target is None:
        import io

        buf = io.BytesIO()
        result.image.save(buf, format="PNG")
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
    else:
        try:
            with atomic_path(target) as tmp:
                result.image.save(tmp, format="PNG")
        except OSError as exc:
            raise ImeshError(f"cannot write {target}: {exc.strerror or exc}") from None
        typer.echo(str(target))
    console.print(f"{label}: {side}×{side} cut-out, {how}", soft_wrap=True, markup=False)
