"""Turntables: the mesh turning once around +Y, as frames, a GIF (Pillow) or an MP4 (imageio-ffmpeg)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from instantmesh_cli.errors import ImeshError, UsageError
from instantmesh_cli.preview.meshfile import PreviewMesh, load_mesh
from instantmesh_cli.preview.render import render_orbit

ANIMATION_SUFFIXES = (".gif", ".mp4")
VIDEO_HINT = "pip install 'instantmesh-cli[video]' (or: pip install imageio-ffmpeg)"


def turntable(
    mesh: str | Path | PreviewMesh,
    frames: int = 120,
    size: int = 512,
    elevation: float = 20.0,
    *,
    device: str | None = "auto",
) -> list[Image.Image]:
    """``frames`` views at azimuths 0, 360/frames, ... (one full turn, starting from the front), ``size`` square."""
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    pm = mesh if isinstance(mesh, PreviewMesh) else load_mesh(mesh)
    azimuths = np.arange(frames, dtype=np.float64) * (360.0 / frames)
    rendered = render_orbit(pm, azimuths, elevation, size, device=device)
    return [Image.fromarray(f) for f in rendered.images]


def video_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def require_video() -> None:
    """Raise the one-line error that says how to get MP4 support, unless it is installed."""
    if not video_available():
        raise ImeshError("writing .mp4 needs imageio-ffmpeg, which is not installed", hint=VIDEO_HINT)


def write_animation(frames: Sequence[Image.Image], path: str | Path, fps: float = 25.0) -> Path:
    """Write ``frames`` as a looping GIF or an MP4 (by ``path``'s suffix), atomically.

    Pillow stores consecutive identical GIF frames (a turntable of a symmetric object) as
    one frame with their delays added: the loop plays the same, with fewer frames in the file.
    """
    from instantmesh_cli.fileio import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise UsageError(f"{path}: an animation is written as .gif or .mp4")
    if not frames:
        raise ValueError("no frames to write")
    if suffix == ".mp4":
        require_video()
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            _write_gif(frames, tmp, fps)
        else:
            _write_mp4(frames, tmp, fps)
    return path


def _write_gif(frames: Sequence[Image.Image], path: Path, fps: float) -> None:
    # GIF delays are whole centiseconds; one palette per frame keeps textures' colours.
    duration = max(20, int(round(100.0 / fps)) * 10)
    paletted = [f.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
                for f in frames]
    paletted[0].save(path, format="GIF", save_all=True, append_images=paletted[1:], duration=duration, loop=0,
                     disposal=1, optimize=False)


def _write_mp4(frames: Sequence[Image.Image], path: Path, fps: float) -> None:
    import imageio_ffmpeg

    w, h = frames[0].size
    if w % 2 or h % 2:
        raise UsageError(f"an MP4 needs an even frame size (H.264 with 4:2:0 colour), got {w}×{h}")
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=8, macro_block_size=1,
        output_params=["-f", "mp4", "-movflags", "+faststart"], ffmpeg_log_level="error",
    )
    writer.send(None)  # the generator starts ffmpeg on the first send
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(np.asarray(frame.convert("RGB"))))
    finally:
        writer.close()
