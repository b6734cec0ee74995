"""The cached ``packages_distributions`` that imesh's processes use (metadata_cache.py)."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
import textwrap

import pytest

from instantmesh_cli import metadata_cache


@pytest.fixture
def standard(monkeypatch, tmp_path):
    """The standard function, counted; the cache in a fresh folder; the module's memo empty."""
    calls = []
    original = metadata.packages_distributions

    def counted():
        calls.append(1)
        return original()

    monkeypatch.setattr(metadata, "packages_distributions", counted)
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "cache"))
    metadata_cache._mapping.cache_clear()
    yield calls, original
    metadata_cache._mapping.cache_clear()


def test_same_answer_as_the_standard_function_computed_once(standard, tmp_path):
    calls, original = standard
    metadata_cache.install()
    first = metadata.packages_distributions()
    assert first == original() and calls == [1]
    first["numpy"] = ["changed"]  # a caller's copy is its own
    assert metadata.packages_distributions()["numpy"] != ["changed"] and calls == [1]
    files = list((tmp_path / "cache" / "metadata").glob("packages-*.json"))
    assert len(files) == 1
    metadata_cache.install()  # twice is once
    assert getattr(metadata.packages_distributions, "imesh_cached")


def test_a_new_process_reads_the_file_and_an_installed_package_invalidates_it(standard, tmp_path, monkeypatch):
    calls, _ = standard
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    metadata_cache.install()
    assert "imeshprobe" not in metadata.packages_distributions() and calls == [1]
    metadata_cache._mapping.cache_clear()  # as a new process
    metadata.packages_distributions()
    assert calls == [1]  # from the file
    # A distribution installed into a folder on sys.path: its folder's time changes, the answer too.
    dist = site / "imeshprobe-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: imeshprobe\nVersion: 1.0\n")
    (dist / "top_level.txt").write_text("imeshprobe\n")
    import os
    stamp = site.stat().st_mtime_ns + 10**9  # coarse file-system clocks: make the change visible
    os.utime(site, ns=(stamp, stamp))
    assert metadata.packages_distributions()["imeshprobe"] == ["imeshprobe"] and calls == [1, 1]


def test_an_unwritable_cache_still_answers(standard, tmp_path, monkeypatch):
    calls, original = standard
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("IMESH_CACHE_DIR", str(blocker))  # a file where the folder should be
    metadata_cache.install()
    assert metadata.packages_distributions() == original()


def test_the_cli_process_uses_it_and_a_library_user_does_not():
    code = textwrap.dedent("""
        import sys
        {first}
        imported_before = "importlib.metadata" in sys.modules
        import importlib.metadata as m
        print(imported_before, getattr(m.packages_distributions, "imesh_cached", False))
    """)
    cases = (
        ("import importlib.metadata; import instantmesh_cli.cli", "True True"),  # imported before: patched at once
        ("import instantmesh_cli.cli", "False True"),  # not imported by the CLI itself: patched when it is
        ("import instantmesh_cli", "False False"),
    )
    for first, expected in cases:
        done = subprocess.run([sys.executable, "-c", code.format(first=first)], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == expected, first


def test_the_deferred_patch_is_one_finder_and_leaves_other_imports_alone(monkeypatch):
    import importlib

    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "importlib.metadata")
    monkeypatch.setattr(importlib, "metadata", metadata)  # the fresh import rebinds it; put back afterwards
    metadata_cache.install()
    metadata_cache.install()
    assert sys.meta_path.count(metadata_cache._PatchOnImport) == 1
    assert metadata_cache._PatchOnImport.find_spec("json") is None
    fresh = importlib.import_module("importlib.metadata")
    assert fresh is not metadata and getattr(fresh.packages_distributions, "imesh_cached", False)
    assert metadata_cache._PatchOnImport not in sys.meta_path
