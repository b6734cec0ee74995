"""Compiled-bytecode cache for installs whose package folders cannot be written.

Python keeps each module's bytecode beside its source, in ``__pycache__``. A container image
or a system install made with ``pip install --no-compile`` and mounted read-only has none
and can never write one, so every process compiles torch, diffusers and transformers from
source again: 11.8 s of a 33 s cold start on the H200 machine's image. Python's own answer
is a bytecode tree elsewhere (``sys.pycache_prefix``, PEP 3147's ``PYTHONPYCACHEPREFIX``);
imesh points it into its cache only where the default cannot work, so a normal install is
left exactly as Python runs it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# The largest tree imesh imports; where it cannot cache bytecode, the rest of site-packages cannot either.
PROBE_PACKAGE = "torch"


def package_folder(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)  # finds the folder without importing the package
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def has_bytecode(folder: Path) -> bool:
    """Whether ``folder``'s ``__pycache__`` already holds compiled modules."""
    cache = folder / "__pycache__"
    return cache.is_dir() and any(cache.glob("*.pyc"))


def bytecode_is_cached_in_place(folder: Path) -> bool:
    """Whether Python can keep ``folder``'s bytecode in its own ``__pycache__`` (or already has)."""
    cache = folder / "__pycache__"
    return has_bytecode(folder) or os.access(cache if cache.is_dir() else folder, os.W_OK)


def redirect_bytecode_if_needed(cache_root: Path | None = None) -> Path | None:
    """Point ``sys.pycache_prefix`` into imesh's cache when the installed packages cannot hold bytecode.

    Returns the folder used, or None when nothing changed: the user chose a prefix (or no
    bytecode at all), or the packages cache their bytecode themselves. Child processes (serve
    workers) inherit it through ``PYTHONPYCACHEPREFIX``.
    """
    if sys.pycache_prefix is not None or sys.dont_write_bytecode:
        return None
    folder = package_folder(PROBE_PACKAGE)
    if folder is None or bytecode_is_cached_in_place(folder):
        return None
    if cache_root is None:
        from instantmesh_cli.settings import cache_dir  # not through hub/: the client must stay light

        cache_root = cache_dir()
    prefix = Path(cache_root) / "bytecode"
    try:
        prefix.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # no writable cache either: Python compiles in memory as before
    sys.pycache_prefix = str(prefix)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    return prefix
