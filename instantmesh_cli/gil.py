"""A shorter GIL switch interval while imesh runs Python in threads beside a latency-bound thread.

CPython hands the GIL from a thread that holds it to one that waits for it every
``sys.getswitchinterval()`` seconds (5 ms by default). A thread that drives the GPU returns from
torch (which drops the GIL inside each operation) thousands of times a second; beside a thread that
runs Python steadily (importing, reading weights, building a model) it waits up to that interval
every time. Measured on the H200 in a one-photo cold start: the condition encoding (a few hundred
operations) took 1.15 s while the reconstruction model loaded beside it, against 0.2 s of its own
samples in a profile.

The interval is process-wide, and overlapping users must not restore each other's value: the
shortest asked for is in force while anyone holds :func:`responsive`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Iterator

RESPONSIVE_S = 0.0005

_lock = threading.Lock()
_holders = 0
_saved = 0.0


@contextlib.contextmanager
def responsive(interval: float = RESPONSIVE_S) -> Iterator[None]:
    """While inside (from any thread), the switch interval is at most ``interval``; the value before the
    first holder came is restored when the last one leaves."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = sys.getswitchinterval()
        _holders += 1
        sys.setswitchinterval(min(sys.getswitchinterval(), interval))
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                sys.setswitchinterval(_saved)
