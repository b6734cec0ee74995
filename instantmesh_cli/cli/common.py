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


def write_stdout_bytes(data: bytes) -> None:
    """Binary data (a GLB, a PNG) on stdout, flushed: the only thing stdout carries then."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


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
