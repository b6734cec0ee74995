"""Triton's ``triton_key()`` answered from imesh's cache, in the processes that run imesh's kernels.

Triton names each kernel in its disk cache by a key that starts with ``triton_key()``: the sha256
of its compiler's, backends' and language's Python files and of its 500 MB ``libtriton`` library,
computed once per process at the first kernel call. In a one-photo ``imesh generate`` on the H200
that was 538 of the 849 py-spy samples spent in Triton (cold start, first views): about 0.5 s.

The value depends on those files' bytes only, so it is kept on disk keyed to their paths, sizes,
modification times and inodes (what ``make`` and pip's caches trust too): any file installed,
upgraded or edited in place changes the key, and the value is then computed again by Triton
itself. The set of files stat'ed is a superset of what Triton hashes (every ``.py`` file under
those folders, the library, and the cache module that holds the function).

Only ``triton.runtime.cache.triton_key`` is replaced: it is what Triton's ``compile`` reads its
cache key through. Inductor keeps its own imported reference and computes its own key.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterable

_HASHED_FOLDERS = ("compiler", "backends", "language")
KEEP = 8  # cached values kept (one per Triton install that shares the cache folder)


def hashed_files(triton_root: Path) -> list[Path]:
    """The files whose bytes ``triton_key()`` hashes, or a superset, in a fixed order."""
    files = [triton_root / "runtime" / "cache.py"]
    files += sorted((triton_root / "_C").glob("libtriton*"))
    for folder in _HASHED_FOLDERS:
        for parent, dirs, names in os.walk(triton_root / folder):
            dirs.sort()
            files += [Path(parent) / n for n in sorted(names) if n.endswith(".py")]
    return files


def remembered(compute: Callable[[], str], files: Iterable[Path], folder: Path) -> str:
    """``compute()``, kept in ``folder`` under the files' signature and read back while they are unchanged.
    A cache that cannot be read or written only costs the computation."""
    from instantmesh_cli.fileio import files_signature, keep_newest, write_bytes_atomic

    path = folder / f"{files_signature(files)}.txt"
    try:
        kept = path.read_text(encoding="utf-8")
        if kept:
            return kept
    except (OSError, UnicodeDecodeError):
        pass
    value = compute()
    try:
        write_bytes_atomic(path, value.encode("utf-8"))
        keep_newest(folder, "*.txt", KEEP)
    except OSError:
        pass
    return value


def install(triton: Any) -> bool:
    """Answer ``triton_key()`` from imesh's cache from now on, in this process; False (nothing changed)
    where this Triton has no such function to replace."""
    import importlib

    from instantmesh_cli.settings import cache_dir

    try:
        module = importlib.import_module("triton.runtime.cache")
    except ImportError:
        return False
    original = getattr(module, "triton_key", None)
    if not callable(original) or getattr(original, "remembered_by_imesh", False):
        return False
    root = Path(triton.__file__).parent

    @functools.cache
    def triton_key() -> str:
        return remembered(original, hashed_files(root), cache_dir() / "triton-key")

    triton_key.remembered_by_imesh = True
    module.triton_key = triton_key
    return True
