"""What every command shares: the stderr console and turning errors into one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

# Logs and progress go to stderr; stdout carries only data (paths, JSON lines, GLB bytes).
console = Console(stderr=True, highlight=False)


def error_line(message: str) -> None:
    """Print one error line on stderr (plain text: no markup, no wrapping)."""
    sys.stderr.write(f"imesh: error: {message}\n")
    sys.stderr.flush()


def warn_line(message: str) -> None:
    sys.stderr.write(f"imesh: warning: {message}\n")
    sys.stderr.flush()


def ensure_writable(path: Path) -> None:
    """Fail before any work when ``path`` cannot be written: its first existing ancestor must be a writable folder."""
    from instantmesh_cli.errors import ImeshError

    existing = path.parent if str(path.parent) else Path(".")
    while not existing.exists():  # the first existing ancestor decides whether we can create the rest
        existing = existing.parent
    if not existing.is_dir():
        raise ImeshError(f"cannot write {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ImeshError(f"cannot write {path}: {existing} is not writable")
    if path.is_dir():
        raise ImeshError(f"cannot write {path}: it is a folder")


def png_output(output: str, input_name: str, *, stem_suffix: str = "", what: str = "") -> Path:
    """The PNG a command writes, checked before any work: ``-o file.png``, or ``-o DIR/`` → ``DIR/<stem><stem_suffix>.png``."""
    from instantmesh_cli.errors import UsageError

    path = Path(output)
    if output.endswith(("/", os.sep)) or path.is_dir():
        stem = Path(input_name).stem if input_name != "-" else "stdin"
        path = path / f"{stem}{stem_suffix}.png"
    if path.suffix.lower() != ".png":
        raise UsageError(f"output {output} must be a .png file{what}")
    ensure_writable(path)
    return path


def check_texture_options(texture_size: int, refine_steps: int, target_faces: int | None, uv: str | None) -> None:
    """Range checks shared by every command that bakes textures (usage errors, exit 2)."""
    from instantmesh_cli.errors import UsageError

    if not 64 <= texture_size <= 8192:
        raise UsageError(f"--texture-size must be between 64 and 8192, got {texture_size}")
    if refine_steps < 0:
        raise UsageError(f"--refine-steps must be 0 or more, got {refine_steps}")
    if target_faces is not None and target_faces != 0 and target_faces < 100:
        raise UsageError(f"--target-faces must be 0 (keep all) or at least 100, got {target_faces}")
    if uv is not None and uv not in UV_METHODS:
        raise UsageError(f"unknown --uv {uv!r}; choose one of: {', '.join(UV_METHODS)}")


def check_sampling_options(scheduler: str, steps: int | None, guidance: float, foreground_ratio: float) -> None:
    """Range checks shared by the commands that run the multi-view diffusion (usage errors, exit 2)."""
    from instantmesh_cli.errors import UsageError

    if scheduler not in SCHEDULER_NAMES:
        raise UsageError(f"unknown --scheduler {scheduler!r}; choose one of: {', '.join(SCHEDULER_NAMES)}")
    if steps is not None and not 1 <= steps <= 1000:
        raise UsageError(f"--steps must be between 1 and 1000, got {steps}")
    if not 0.0 <= guidance <= 100.0:
        raise UsageError(f"--guidance must be between 0 and 100, got {guidance}")
    if not 0.0 < foreground_ratio <= 1.0:
        raise UsageError(f"--foreground-ratio must be in (0, 1], got {foreground_ratio}")


# These mirror instantmesh_cli.texture.uv.UV_METHODS and multiview.schedulers.SAMPLERS
# without importing numpy/torch at start-up (tests/test_cli.py checks that they agree).
UV_METHODS = ("box", "xatlas")
SCHEDULER_NAMES = ("euler-a", "dpm++2m", "unipc")
