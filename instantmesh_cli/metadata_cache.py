"""``importlib.metadata.packages_distributions()`` answered from a cache on disk, in imesh's processes.

diffusers and transformers each call it once when imported, to map module names to the
distributions that install them. It reads every installed distribution's file list and
stats each file in it: on the H200 machine's image (a large venv) the two calls were about
2 s of a 20 s cold start (under cProfile 4.3 s of 24.8, with 54,758 ``stat`` calls). The
answer changes only when a distribution is installed or removed, and that adds or removes a
``*.dist-info`` folder in a folder on ``sys.path``, which changes that folder's modification
time. So the cached answer is keyed to ``sys.path`` and those times, and is computed again,
by the standard library, whenever either differs.

Only imesh's own entry points install it (the CLI, worker processes); a program that imports
imesh as a library keeps the standard function.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

KEEP = 8  # cached answers kept (one per environment that shares the cache folder)


def _key() -> str:
    entries = []
    for entry in sys.path:
        try:
            entries.append([entry, os.stat(entry or ".").st_mtime_ns])
        except OSError:
            entries.append([entry, None])
    return hashlib.sha256(json.dumps([sys.version, entries]).encode()).hexdigest()[:20]


def _folder() -> Path:
    from instantmesh_cli.settings import cache_dir

    return cache_dir() / "metadata"


def _store(path: Path, mapping: dict) -> None:
    from instantmesh_cli.fileio import keep_newest, write_bytes_atomic

    write_bytes_atomic(path, json.dumps(mapping).encode("utf-8"))
    keep_newest(path.parent, "packages-*.json", KEEP)


@functools.lru_cache(maxsize=1)
def _mapping(key: str, compute) -> dict[str, list[str]]:
    try:
        path = _folder() / f"packages-{key}.json"
        if path.is_file():
            found = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(found, dict):
                return found
    except (OSError, ValueError):
        path = None
    mapping = {name: list(dists) for name, dists in compute().items()}
    if path is not None:
        try:
            _store(path, mapping)
        except OSError:
            pass  # an unwritable cache only costs the scan again next time
    return mapping


def install() -> None:
    """Make this process's ``importlib.metadata.packages_distributions`` the cached one (once).

    If ``importlib.metadata`` is not imported yet, it is patched when something first imports
    it: a process that never does (the client of ``imesh serve``) is spared its import.
    """
    metadata = sys.modules.get("importlib.metadata")
    if metadata is not None:
        _patch(metadata)
    elif _PatchOnImport not in sys.meta_path:
        sys.meta_path.insert(0, _PatchOnImport)


def _patch(metadata) -> None:
    standard = metadata.packages_distributions
    if getattr(standard, "imesh_cached", False):
        return

    @functools.wraps(standard)
    def packages_distributions() -> dict[str, list[str]]:
        # A fresh copy per call, as the standard function gives: callers may change theirs.
        return {name: list(dists) for name, dists in _mapping(_key(), standard).items()}

    packages_distributions.imesh_cached = True  # type: ignore[attr-defined]
    metadata.packages_distributions = packages_distributions


class _PatchOnImport:
    """A meta-path finder for ``importlib.metadata`` alone: the standard spec, patched once executed."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "importlib.metadata":
            return None
        sys.meta_path.remove(cls)  # once; and find_spec below must not find this finder again
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or isinstance(spec.loader, type) or not hasattr(spec.loader, "exec_module"):
            return spec  # a shared (frozen, built-in) loader is left alone: unpatched only costs the scan
        execute = spec.loader.exec_module

        def exec_module(module) -> None:
            execute(module)
            _patch(module)

        spec.loader.exec_module = exec_module  # this spec's own loader object, made for this import
        return spec
