"""Locations for --ray: local paths, file:// and remote URIs (fsspec's in-memory filesystem stands in
for an object store), listing, reading, atomic publishing, resuming, output names."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

pytest.importorskip("pyarrow.fs", reason="the Ray extra is not installed")

from instantmesh_cli.cluster import driver, storage  # noqa: E402
from instantmesh_cli.errors import ImeshError, InputError, UsageError  # noqa: E402


@pytest.fixture()
def bucket():
    """memory://bucket-N/: an empty in-memory 'object store' per test."""
    import uuid

    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/b{uuid.uuid4().hex[:8]}"
    yield fs, f"memory:/{root}"
    if fs.exists(root[len("memory:/"):]):
        fs.rm(root[len("memory:/"):], recursive=True)


def test_schemes_and_local_paths(tmp_path):
    assert storage.scheme("s3://b/k") == "s3" and storage.scheme("photos/a.png") is None
    assert storage.scheme("C:/x.png") is None  # a Windows drive, not a scheme
    assert storage.local_path(f"file://{tmp_path}/a b.png") == tmp_path / "a b.png"
    assert storage.local_path("file:///tmp/a%20b.png") == Path("/tmp/a b.png")
    assert storage.local_path("s3://b/k") is None and storage.is_remote("gs://b/k")
    assert storage.join("s3://b/out/", PurePosixPath("sub/a.glb")) == "s3://b/out/sub/a.glb"


def test_listing_reading_and_names_on_a_remote_folder(bucket):
    fs, root = bucket
    for key in ("in/a.png", "in/sub/a.png", "in/notes.txt", "in/b.JPG"):
        fs.pipe(f"{root[len('memory:/'):]}/{key}", b"x" + key.encode())
    sources = driver.expand_sources([f"{root}/in/"], recursive=True)
    assert [s.name for s in sources] == [f"{root}/in/a.png", f"{root}/in/b.JPG", f"{root}/in/sub/a.png"]
    assert [str(s.subdir) for s in sources] == [".", ".", "sub"]
    targets, ext = driver.plan_targets(sources, f"{root}/out/", "obj", ("glb", "obj", "ply"))
    assert ext == "obj" and targets == [f"{root}/out/a.obj", f"{root}/out/b.obj", f"{root}/out/sub/a.obj"]
    assert storage.read_bytes(f"{root}/in/a.png", "a.png") == b"xin/a.png"
    with pytest.raises(InputError, match=r"^gone.png: no such file$"):
        storage.read_bytes(f"{root}/in/gone.png", "gone.png")
    fs.pipe(f"{root[len('memory:/'):]}/only-text/notes.txt", b"x")
    with pytest.raises(UsageError, match="no images in folder"):
        driver.expand_sources([f"{root}/only-text/"])
    with pytest.raises(UsageError, match="patterns are not expanded"):
        driver.expand_sources([f"{root}/in/*.png"])
    assert driver.plan_targets(sources[:1], f"{root}/one.ply", None, ("glb", "obj", "ply")) == ([f"{root}/one.ply"], "ply")


def test_publish_is_atomic_and_resumable(bucket, tmp_path, monkeypatch):
    fs, root = bucket
    local = tmp_path / "a.glb"
    local.write_bytes(b"glTF" + bytes(range(256)) * 100)
    target = f"{root}/out/a.glb"
    assert storage.existing([target, str(local)]) == [False, True]
    storage.publish(local, target)
    assert storage.read_bytes(target, "a") == local.read_bytes()
    assert storage.existing([target]) == [True]
    inner = root[len("memory:/"):]
    assert fs.ls(f"{inner}/out", detail=False) == [f"{inner}/out/a.glb"]  # no temporary key left

    real_filesystem = storage.filesystem
    moves = []

    class MoveFails:
        """The store goes away between the upload and the move onto the target."""

        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def move(self, src, dst):
            moves.append((src, dst))
            raise OSError("connection reset")

    monkeypatch.setattr(storage, "filesystem", lambda uri: (MoveFails(real_filesystem(uri)[0]), real_filesystem(uri)[1]))
    target2 = f"{root}/out/b.glb"
    with pytest.raises(ImeshError, match=rf"^cannot write {target2}: connection reset$"):
        storage.publish(local, target2)
    monkeypatch.setattr(storage, "filesystem", real_filesystem)
    assert moves and PurePosixPath(moves[0][0]).name.startswith(".b.")  # the bytes went to a temporary key
    assert fs.ls(f"{inner}/out", detail=False) == [f"{inner}/out/a.glb"]


def test_sweep_removes_only_leftover_temporaries(tmp_path, bucket):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.glb", ".a.x1y2z3.part.glb", ".a.k9.part.png", ".b.q.part.glb", ".ab.q.part.glb"):
        (out / name).write_bytes(b"x")
    assert storage.sweep_temporaries([str(out / "a.glb"), str(out / "b.glb")]) == 2
    assert sorted(p.name for p in out.iterdir()) == [".a.k9.part.png", ".ab.q.part.glb", "a.glb"]
    fs, root = bucket
    inner = root[len("memory:/"):]
    fs.pipe(f"{inner}/o/.m.0123abcd.part.glb", b"x")
    fs.pipe(f"{inner}/o/m.glb", b"y")
    assert storage.sweep_temporaries([f"{root}/o/m.glb"]) == 1
    assert fs.ls(f"{inner}/o", detail=False) == [f"{inner}/o/m.glb"]


def test_local_inputs_and_outputs_keep_the_local_batch_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "in" / name).write_bytes(b"x")
    sources = driver.expand_sources(["in", "missing.png"])
    assert [s.name for s in sources] == ["in/a.png", "in/b.png", "missing.png"]
    assert all(Path(s.location).is_absolute() for s in sources)  # actors run in other folders
    targets, _ = driver.plan_targets(sources, "out/", None, ("glb",))
    assert targets == ["out/a.glb", "out/b.glb", "out/missing.glb"]
    with pytest.raises(UsageError, match="not '-'"):
        driver.expand_sources(["-"])
