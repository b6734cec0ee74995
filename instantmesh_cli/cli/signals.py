"""SIGTERM handled like Ctrl-C: the batch stops cleanly, reports what finished, and exits 143."""

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


def _raise(signum: int, frame) -> None:
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
