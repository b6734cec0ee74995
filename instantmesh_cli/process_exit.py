"""Ending imesh's own process as soon as its work is done and said.

Once the last output is written, a one-photo ``imesh generate`` took another 1.25-1.4 s to end
on the 2-core VM and 1.5-1.8 s on the H200 machine: the interpreter's teardown, which takes
every module apart and destroys torch's, onnxruntime's and the CUDA driver's objects one by one
(a garbage collection is 0.26 s of it). Nothing in that teardown writes anything the user keeps.
So the CLI ends the way Python's shutdown begins, then leaves without the teardown:

1. imesh's thread pools shut down (waiting for their work);
2. if any other non-daemon thread is alive, the ordinary exit runs instead (it waits for them);
3. the atexit handlers run: logging's flush, temporary files' cleanup, Ray's and Inductor's
   shutdown of their processes, ...;
4. stdout and stderr are flushed; then ``os._exit``.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_promptly(code: int) -> NoReturn:
    """Exit with ``code`` as described above."""
    from instantmesh_cli.thread_pools import shutdown_all

    shutdown_all()
    me = threading.current_thread()
    waiting = [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's own, what its shutdown calls
    if waiting or run_exit_handlers is None or me is not threading.main_thread():
        sys.exit(code)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)
