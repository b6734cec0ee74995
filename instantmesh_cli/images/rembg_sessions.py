"""rembg's model sessions, imported without rembg's cut-out module.

``import rembg`` runs rembg/__init__.py, which imports rembg.bg, which imports
pymatting (alpha matting: its numba kernels compile on the first import, ~90 s in a
fresh environment), scikit-image and scipy. imesh never uses alpha matting: it asks a
session for the matte and keeps the photo's own colours. The session classes
(``rembg.sessions``) and ``rembg.session_factory`` need only onnxruntime, pooch,
Pillow and numpy, so they are imported under a ``rembg`` package whose __init__ has
not run yet; it runs, in full, the first time anything else asks the package for an
attribute (``rembg.remove``, ``from rembg import new_session``…), so other code that
imports rembg keeps working unchanged.

Nothing here writes to stdout: rembg's only prints at import are in rembg.bg (when
onnxruntime is missing), which is not imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any, Callable

# Re-entrant: completing the package runs its __init__, whose imports look
# attributes up on the package again.
_lock = threading.RLock()


def _deferred_package() -> ModuleType:
    """The ``rembg`` package object, its __init__ not executed until an attribute is missing."""
    spec = importlib.util.find_spec("rembg")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError("No module named 'rembg'")
    pkg = importlib.util.module_from_spec(spec)
    completing = False

    def __getattr__(name: str) -> Any:
        nonlocal completing
        with _lock:
            if completing or "__getattr__" not in pkg.__dict__:
                raise AttributeError(f"module 'rembg' has no attribute {name!r}")
            completing = True
            try:
                spec.loader.exec_module(pkg)
            finally:
                completing = False
                pkg.__dict__.pop("__getattr__", None)
        try:
            return pkg.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'rembg' has no attribute {name!r}") from None

    pkg.__getattr__ = __getattr__  # PEP 562: consulted only for names the module lacks
    return pkg


def load() -> tuple[dict[str, type], Callable[..., Any]]:
    """rembg's session classes by model name, and its ``new_session``.

    Raises ImportError when rembg or onnxruntime is not installed, leaving
    ``sys.modules`` as it found it.
    """
    with _lock:
        if sys.modules.get("rembg", False) is None:  # blocked on purpose (tests, sandboxes)
            raise ImportError("import of rembg halted; None in sys.modules")
        added = "rembg" not in sys.modules
        before = set(sys.modules)
        if added:
            sys.modules["rembg"] = _deferred_package()
        try:
            sessions = importlib.import_module("rembg.sessions")
            factory = importlib.import_module("rembg.session_factory")
        except BaseException:
            for name in set(sys.modules) - before:
                if name == "rembg" or name.startswith("rembg."):
                    del sys.modules[name]
            raise
        import onnxruntime

        # What importing rembg.bg would have done: only errors from onnxruntime's C++
        # logger (its warnings about unused providers are noise on every run).
        onnxruntime.set_default_logger_severity(3)
        return sessions.sessions, factory.new_session


def from_file(session_class: type, path: str | os.PathLike[str]) -> Any:
    """A session of ``session_class`` that reads its model from ``path``.

    rembg finds a model file only under its own home (``U2NET_HOME`` & co., read from
    the environment, process-wide) and accepts ``model_path`` only in its ``*_custom``
    sessions, whose pre-processing is not the named model's. A subclass that answers
    ``download_models`` with ``path`` — the one hook rembg's sessions have for "where is
    the file" — keeps everything else of the named session: its name, normalisation,
    input size and post-processing.
    """
    import onnxruntime as ort

    pinned = type(session_class.__name__, (session_class,), {
        "__module__": session_class.__module__,
        "download_models": classmethod(lambda cls, *args, **kwargs: os.fspath(path)),
    })
    options = ort.SessionOptions()
    # As rembg's new_session does: OMP_NUM_THREADS bounds onnxruntime's thread pools.
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        options.inter_op_num_threads = options.intra_op_num_threads = int(threads)
    return pinned(session_class.name(), options)
