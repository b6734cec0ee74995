"""SIGTERM handled like Ctrl-C: the batch stops cleanly, reports what finished, and exits 143.

The CLI installs the handlers (:func:`stop_on_signals`); the batch drivers (the in-process runner's
reporter, the GPU worker pool, the server client) hold a stop while they claim and report a job
(:func:`signals_held`), so that a written output is always reported once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Interrupted(KeyboardInterrupt):
    """A stop asked by a signal; ``exit_code`` is 128 + the signal number, as shells report it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum


class _Held:
    depth = 0  # main thread only: signal handlers run there
    pending: int | None = None


def _raise(signum: int, frame) -> None:
    if _Held.depth:
        _Held.pending = _Held.pending or signum  # raised when the held block ends
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """A stop signal that arrives in the block is raised when the block ends, not inside it.

    A job's report (its summary entry, warnings, stdout line) runs in one: a Ctrl-C that lands
    half-way through must not leave a written output without its JSON line. Off the main thread
    it does nothing, since a signal never interrupts another thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Held.depth += 1
    try:
        yield
    finally:
        _Held.depth -= 1
        if not _Held.depth and _Held.pending is not None:
            signum, _Held.pending = _Held.pending, None
            raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM (and SIGINT, so both read the same) raise :class:`Interrupted` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _Held.pending = None
