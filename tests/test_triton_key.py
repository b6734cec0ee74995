"""Triton's per-process key, kept in imesh's cache while the files it hashes are unchanged."""

import os
import subprocess
import sys
import textwrap
import types

import pytest

from instantmesh_cli import fileio
from instantmesh_cli.multiview import triton_key
from triton_check import has_triton


def _tree(root):
    """A Triton-shaped folder: the files ``triton_key()`` hashes, and one it does not."""
    for rel in ("runtime/cache.py", "_C/libtriton.so", "compiler/compiler.py", "backends/nvidia/driver.py",
                "language/core.py", "compiler/notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return root


def test_the_files_cover_the_sources_and_the_library_and_nothing_else(tmp_path):
    root = _tree(tmp_path / "triton")
    rel = [p.relative_to(root).as_posix() for p in triton_key.hashed_files(root)]
    assert rel == ["runtime/cache.py", "_C/libtriton.so", "compiler/compiler.py", "backends/nvidia/driver.py",
                   "language/core.py"]


def test_a_value_is_computed_once_while_its_files_are_unchanged_and_again_when_one_changes(tmp_path):
    root = _tree(tmp_path / "triton")
    files = triton_key.hashed_files(root)
    calls = []

    def compute():
        calls.append(1)
        return f"key-{len(calls)}"

    cache = tmp_path / "cache"
    assert triton_key.remembered(compute, files, cache) == "key-1"
    assert triton_key.remembered(compute, files, cache) == "key-1" and len(calls) == 1
    st = files[1].stat()
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the library rebuilt in place
    assert triton_key.remembered(compute, files, cache) == "key-2"
    files[2].write_text("compiler, edited")  # a source edited, same size or not
    assert triton_key.remembered(compute, files, cache) == "key-3"
    files[3].unlink()
    assert triton_key.remembered(compute, files, cache) == "key-4"


def test_an_empty_or_unreadable_kept_value_is_computed_again(tmp_path):
    root = _tree(tmp_path / "triton")
    files = triton_key.hashed_files(root)
    cache = tmp_path / "cache"
    kept = cache / f"{fileio.files_signature(files)}.txt"
    cache.mkdir()
    for damage in (b"", b"\xff\xfe not text"):
        kept.write_bytes(damage)
        assert triton_key.remembered(lambda: "key", files, cache) == "key"
        assert kept.read_text() == "key"


def test_a_cache_that_cannot_be_written_only_costs_the_computation(tmp_path):
    root = _tree(tmp_path / "triton")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder would go")
    values = [triton_key.remembered(lambda: "key", triton_key.hashed_files(root), blocked) for _ in range(2)]
    assert values == ["key", "key"]


def test_install_replaces_the_function_triton_compiles_with_once(tmp_path, monkeypatch):
    root = _tree(tmp_path / "triton")
    calls = []
    cache_module = types.ModuleType("triton.runtime.cache")
    cache_module.triton_key = lambda: calls.append(1) or "3.9.0-abc"
    fake = types.ModuleType("triton")
    fake.__file__ = str(root / "__init__.py")
    monkeypatch.setitem(sys.modules, "triton.runtime.cache", cache_module)
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "imesh"))
    assert triton_key.install(fake) is True
    assert triton_key.install(fake) is False  # already installed: left as it is
    assert cache_module.triton_key() == "3.9.0-abc" == cache_module.triton_key() and len(calls) == 1
    assert len(list((tmp_path / "imesh" / "triton-key").glob("*.txt"))) == 1


def test_a_triton_without_the_function_is_left_alone(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton.runtime.cache", types.ModuleType("triton.runtime.cache"))
    assert triton_key.install(types.ModuleType("triton")) is False


@pytest.mark.skipif(not has_triton, reason="Triton is not installed (the CPU build of torch ships none)")
def test_the_real_key_is_what_triton_computes_in_a_first_and_a_second_process(tmp_path):
    code = textwrap.dedent("""
        import triton, triton.runtime.cache as c
        from instantmesh_cli.multiview import triton_key
        own = c.triton_key()
        c.triton_key.cache_clear()
        print(triton_key.install(triton), c.triton_key() == own)
    """)
    env = {**os.environ, "IMESH_CACHE_DIR": str(tmp_path)}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["True", "True"]
    assert len(list((tmp_path / "triton-key").glob("*.txt"))) == 1
