"""What every command shares: the stderr console and turning errors into one line."""

from __future__ import annotations

import sys

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
