"""Process-wide thread pools, one per kind of work, made on first use.

Used for work that releases the GIL (numpy, zlib, safetensors reads, GPU copies) beside the main
thread. A forked child inherits the pool objects but none of their threads, so it starts afresh.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def shared_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The pool for ``name`` (threads named ``imesh-<name>``), made with ``workers`` threads the first time."""
    with _LOCK:
        found = _POOLS.get(name)
        if found is None:
            found = _POOLS[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"imesh-{name}")
        return found


def shutdown_all() -> None:
    """Finish the work given to every pool and stop their threads (a later ``shared_pool`` makes a new one)."""
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True)


def _forget_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a parent thread may have held it at the fork
    _POOLS.clear()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_forget_in_child)
