from pathlib import Path

import pytest

from instantmesh_cli.chain.job import derive_seed
from instantmesh_cli.inputs import expand_inputs, plan_outputs, read_list
from instantmesh_cli.errors import UsageError

FORMATS = ("glb", "obj", "ply")


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_glob_and_duplicates(tmp_path):
    a = touch(tmp_path / "imgs" / "a.png")
    b = touch(tmp_path / "imgs" / "b.JPG")
    touch(tmp_path / "imgs" / "notes.txt")
    c = touch(tmp_path / "imgs" / "sub" / "c.webp")
    items = expand_inputs([str(tmp_path / "imgs"), str(a)])
    assert [i.path for i in items] == [a, b]  # sorted, text file skipped, duplicate dropped
    deep = expand_inputs([str(tmp_path / "imgs")], recursive=True)
    assert [i.path for i in deep] == [a, b, c]
    assert deep[2].subdir == Path("sub")
    globbed = expand_inputs([str(tmp_path / "imgs" / "*.png")])
    assert [i.path for i in globbed] == [a]


def test_missing_file_is_kept_for_reporting(tmp_path):
    items = expand_inputs([str(tmp_path / "nope.png")])
    assert items[0].path == tmp_path / "nope.png"


def test_empty_folder_and_unmatched_glob_are_usage_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images in folder"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(UsageError, match="no images match"):
        expand_inputs([str(tmp_path / "*.png")])


def test_stdin_alone_only(tmp_path):
    assert expand_inputs(["-"])[0].is_stdin
    with pytest.raises(UsageError):
        expand_inputs(["-", str(touch(tmp_path / "a.png"))])


def test_read_list_skips_comments():
    import io

    assert read_list(io.StringIO("a.png\n\n# note\n  b.png  \n")) == ["a.png", "b.png"]


def test_output_planning(tmp_path):
    a = touch(tmp_path / "x" / "cat.png")
    b = touch(tmp_path / "y" / "cat.jpg")
    items = expand_inputs([str(a), str(b)])
    paths, ext = plan_outputs(items, str(tmp_path / "out") + "/", None, FORMATS)
    assert ext == "glb"
    assert paths == [tmp_path / "out" / "cat.glb", tmp_path / "out" / "cat_2.glb"]
    single, ext = plan_outputs(items[:1], str(tmp_path / "one.obj"), None, FORMATS)
    assert single == [tmp_path / "one.obj"] and ext == "obj"
    noext, ext = plan_outputs(items[:1], str(tmp_path / "one"), "ply", FORMATS)
    assert noext == [tmp_path / "one.ply"]
    assert plan_outputs(items[:1], "-", None, FORMATS) == ([None], "glb")
    with pytest.raises(UsageError):
        plan_outputs(items, "-", None, FORMATS)
    with pytest.raises(UsageError):
        plan_outputs(items[:1], str(tmp_path / "one.glb"), "obj", FORMATS)
    with pytest.raises(UsageError):
        plan_outputs(items[:1], str(tmp_path / "one.fbx"), None, FORMATS)
    touch(tmp_path / "file.glb")
    with pytest.raises(UsageError):
        plan_outputs(items, str(tmp_path / "file.glb"), None, FORMATS)


def test_derived_seed_depends_on_seed_and_name_only():
    assert derive_seed(42, "/a/b/cat.png") == derive_seed(42, "cat.png")
    assert derive_seed(42, "cat.png") != derive_seed(43, "cat.png")
    assert derive_seed(42, "cat.png") != derive_seed(42, "dog.png")
    assert 0 <= derive_seed(7, "x") < 2**31


def test_only_a_one_photo_generate_skips_the_models_warm_up(tmp_path, monkeypatch):
    # One photo per process: the load-time warm-up (compilation, CUDA graph, encoder and decoder
    # runs) would only repeat what its one job does; a batch warms up for the jobs after the first.
    from instantmesh_cli import cli
    from instantmesh_cli.chain import models

    seen = []
    real_init = models.Models.__init__

    def recording_init(self, *args, single_job=False, **kwargs):
        seen.append(single_job)
        real_init(self, *args, single_job=single_job, **kwargs)

    monkeypatch.setattr(models.Models, "__init__", recording_init)
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_text("not an image")  # each job fails at its read; the models are made first
    assert cli.run(["generate", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.glb"), "--quiet", "--no-server"]) == 1
    assert cli.run(["generate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out"),
                    "--quiet", "--no-server"]) == 1
    assert seen == [True, False]
