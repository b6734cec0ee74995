"""User-facing errors.

Anything raised as an :class:`ImeshError` reaches the user as one line on stderr
(no traceback unless ``--debug``) and a non-zero exit code. Library code raises
these for every problem a user can fix: a bad input, missing weights, a device
that cannot run the job.
"""

from __future__ import annotations


class ImeshError(Exception):
    """A problem the user can act on. ``str(err)`` is the one line shown."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ImeshError):
    """Wrong combination of command-line arguments."""

    exit_code = 2


class InputError(ImeshError):
    """An input file that cannot be used (not an image, truncated, no foreground…)."""


class WeightsError(ImeshError):
    """Model weights that are missing, corrupted or cannot be fetched."""


class DeviceError(ImeshError):
    """The requested device cannot run the job (no CUDA, out of memory…)."""
