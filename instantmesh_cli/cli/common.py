"""What every command shares: the stderr console and turning errors into one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


class _StderrConsole:
    """rich's stderr Console, made on first use. Importing rich took 28 ms of every ``imesh generate``
    through a warm server on the H200 machine (a fifth of the client's own time), and a ``--quiet``
    run never prints through it."""

    _console: "Console | None" = None

    @property
    def real(self) -> "Console":  # rich needs no more than its attributes: it never checks the type
        if self._console is None:
            from rich.console import Console

            type(self)._console = Console(stderr=True, highlight=False)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    # Dunder methods are looked up on the type, not through __getattr__: rich's Live enters its console.
    def __enter__(self) -> "Console":
        return self.real.__enter__()

    def __exit__(self, *exc) -> None:
        self.real.__exit__(*exc)


# Logs and progress go to stderr; stdout carries only data (paths, JSON lines, GLB bytes).
console = _StderrConsole()


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
