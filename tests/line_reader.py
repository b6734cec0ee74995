"""Children whose stdout a test reads a line at a time, then to the end with ``communicate``.

A text-mode pipe reads ahead: ``readline()`` can take the next lines into its buffer, where
``communicate()`` (which reads the raw pipe) never sees them, and a test then misses records
the child did write. An unbuffered binary pipe reads exactly one line.
"""

from __future__ import annotations

import subprocess


def start(cmd: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, **kwargs)


def readline(proc: subprocess.Popen) -> str:
    return proc.stdout.readline().decode()


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """The rest of stdout and all of stderr, once the child has exited."""
    out, err = proc.communicate(timeout=timeout)
    return out.decode(), err.decode()


def stderr_now(proc: subprocess.Popen) -> str:
    return proc.stderr.read().decode()
