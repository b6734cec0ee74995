"""Bytecode for read-only installs: redirected into imesh's cache only where Python cannot cache it in place."""

import os
import sys

from instantmesh_cli import bytecode


def _package(tmp_path, pyc: bool):
    folder = tmp_path / "site" / "torch"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    if pyc:
        (folder / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"")
    return folder


def _read_only(monkeypatch, folder):
    # Modes cannot stand in for a read-only mount when tests run as root (CI does): os.access is.
    real = os.access
    monkeypatch.setattr(bytecode.os, "access", lambda p, mode: False if str(p).startswith(str(folder)) else real(p, mode))


def test_read_only_package_without_bytecode_gets_a_prefix_in_the_cache(tmp_path, monkeypatch):
    folder = _package(tmp_path, pyc=False)
    _read_only(monkeypatch, folder)
    monkeypatch.setattr(bytecode, "package_folder", lambda name: folder)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    prefix = bytecode.redirect_bytecode_if_needed(tmp_path / "cache")
    assert prefix == tmp_path / "cache" / "bytecode" and prefix.is_dir()
    assert sys.pycache_prefix == str(prefix) and os.environ["PYTHONPYCACHEPREFIX"] == str(prefix)


def test_left_alone_where_python_caches_in_place_or_the_user_chose(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    compiled = _package(tmp_path / "a", pyc=True)  # an image built with bytecode: read-only is fine
    _read_only(monkeypatch, compiled)
    monkeypatch.setattr(bytecode, "package_folder", lambda name: compiled)
    assert bytecode.redirect_bytecode_if_needed(tmp_path / "cache") is None
    writable = _package(tmp_path / "b", pyc=False)  # an ordinary venv: Python writes its own __pycache__
    monkeypatch.setattr(bytecode, "package_folder", lambda name: writable)
    assert bytecode.redirect_bytecode_if_needed(tmp_path / "cache") is None
    bare = _package(tmp_path / "c", pyc=False)
    _read_only(monkeypatch, bare)
    monkeypatch.setattr(bytecode, "package_folder", lambda name: bare)
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "mine"))  # the user's own PYTHONPYCACHEPREFIX wins
    assert bytecode.redirect_bytecode_if_needed(tmp_path / "cache") is None
    assert sys.pycache_prefix == str(tmp_path / "mine") and "PYTHONPYCACHEPREFIX" not in os.environ
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE / -B: no bytecode at all
    assert bytecode.redirect_bytecode_if_needed(tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()


def test_the_probe_finds_torch_without_importing_it():
    import subprocess

    code = ("import sys; from instantmesh_cli import bytecode; f = bytecode.package_folder('torch'); "
            "print(f.name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["torch", "False"]
