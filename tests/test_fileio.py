"""Atomic outputs get ``0666 & ~umask``, new or overwritten, like any file a tool writes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from instantmesh_cli import fileio

TESTS = Path(__file__).resolve().parent

# Run with the umask set first: the mode must follow the process's umask, whatever it is.
_WRITE_ALL = """
import json, os, sys
os.umask(int(sys.argv[1], 8))
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from instantmesh_cli.export import export_mesh
from instantmesh_cli.fileio import current_umask, write_bytes_atomic
from instantmesh_cli.mesh import Mesh
from test_export import sphere, textured_sphere
out = Path(sys.argv[3])
files = [write_bytes_atomic(out / "raw.bin", b"data")]
for fmt in ("glb", "obj", "ply"):
    files += export_mesh(textured_sphere(), out / f"tex.{fmt}")
    files += export_mesh(Mesh(*sphere()), out / f"plain.{fmt}")
print(json.dumps({"umask": current_umask(), "files": sorted(str(p) for p in files)}))
"""


def _write_all(umask: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", _WRITE_ALL, f"{umask:o}", str(TESTS), str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


@pytest.mark.parametrize("umask, before", [(0o022, 0o600), (0o077, 0o644), (0o002, 0o600)])
def test_outputs_get_0666_less_umask_new_and_overwritten(tmp_path, umask, before):
    expect = 0o666 & ~umask
    first = _write_all(umask, tmp_path)
    assert first["umask"] == umask
    names = {Path(p).name for p in first["files"]}
    assert names == {"raw.bin", "tex.glb", "tex.obj", "tex.mtl", "tex_texture.png", "tex.ply",
                     "plain.glb", "plain.obj", "plain.ply"}
    assert _modes(tmp_path) == dict.fromkeys(names, expect)  # and no temporary file left behind
    # Overwriting: the old file's mode does not survive; the new file is made like any other.
    for p in tmp_path.iterdir():
        p.chmod(before)
    _write_all(umask, tmp_path)
    assert _modes(tmp_path) == dict.fromkeys(names, expect)


def test_umask_is_read_without_changing_it(monkeypatch):
    if fileio._umask_from_proc() is None:
        pytest.skip("no Umask line in /proc/self/status (not Linux 4.7+)")
    old = os.umask(0o027)
    try:
        assert fileio.current_umask() == 0o027
        assert fileio.output_mode() == 0o640
        # Without /proc the value found at import stands in (it could only be found by setting it).
        monkeypatch.setattr(fileio, "_PROC_STATUS", "/nonexistent/status")
        monkeypatch.setattr(fileio, "_FALLBACK_UMASK", 0o007)
        assert fileio.current_umask() == 0o007
    finally:
        os.umask(old)


def test_keep_newest_deletes_the_oldest_matching_files_only(tmp_path):
    for i in range(5):
        f = tmp_path / f"entry-{i}.json"
        f.write_text(str(i))
        os.utime(f, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "other.txt").write_text("not a cache entry")
    fileio.keep_newest(tmp_path, "entry-*.json", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry-3.json", "entry-4.json", "other.txt"]


def test_files_signature_changes_with_each_file_and_with_extra(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    first = fileio.files_signature([a, b], "fp16")
    assert first == fileio.files_signature([str(a), str(b)], "fp16")  # str or Path, the same key
    assert first != fileio.files_signature([b, a], "fp16")  # the order names the roles
    assert first != fileio.files_signature([a, b], "fp32")
    stamp = a.stat().st_mtime_ns + 10**9
    os.utime(a, ns=(stamp, stamp))  # touched
    touched = fileio.files_signature([a, b], "fp16")
    assert touched != first
    replaced = tmp_path / "a.new"
    replaced.write_bytes(b"one")
    os.utime(replaced, ns=(stamp, stamp))  # same size and time, but another file (inode) in its place
    replaced.replace(a)
    assert fileio.files_signature([a, b], "fp16") != touched
    b.unlink()  # a missing file is a key too, not an error
    assert fileio.files_signature([a, b], "fp16") != fileio.files_signature([a], "fp16")
