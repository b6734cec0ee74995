"""``imesh selftest``, the bundled photo, ``--example``, and weights folders that carry their own revisions
and reconstruction config (what ``selftest --save-weights`` writes and ``generate --weights-dir`` reads)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from instantmesh_cli import hub, settings
from instantmesh_cli.cli import run
from matting_fixture import empty_matting_home, tiny_matting  # noqa: F401

PLAN = ["weights", "read", "prepare", "load", "multiview", "reconstruct", "mesh", "texture", "quality", "export", "preview",
        "check"]


def test_the_example_photo_ships_with_real_alpha():
    from instantmesh_cli.examples import example_photo
    from instantmesh_cli.images import has_real_alpha

    path = example_photo()
    assert path.parent.name == "assets" and path.stat().st_size < 80_000
    with Image.open(path) as img:
        assert img.mode == "RGBA" and has_real_alpha(img) and min(img.size) >= 320
    readme = (path.parent / "README.md").read_text()
    assert "Apache-2.0" in readme and path.name in readme


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One selftest run (its JSON report and stderr) that keeps its tiny weights."""
    folder = tmp_path_factory.mktemp("tiny") / "weights"
    env = {**os.environ, "U2NET_HOME": str(tmp_path_factory.mktemp("no-rembg"))}
    proc = subprocess.run([sys.executable, "-m", "instantmesh_cli", "selftest", "--device", "cpu", "--json",
                           "--save-weights", str(folder)], capture_output=True, text=True, env=env, timeout=300)
    return proc, folder


def test_selftest_runs_every_stage_and_says_so(saved):
    proc, folder = saved
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout: the report and nothing else
    assert report["ok"] is True and report["weights_dir"] == str(folder.resolve())
    assert [s["name"] for s in report["stages"]] == PLAN
    mesh_ok = "ok" if importlib.util.find_spec("pymeshlab") else "skipped"  # the optional extra
    assert {s["name"]: s["status"] for s in report["stages"]} == {n: mesh_ok if n == "mesh" else "ok" for n in PLAN}
    assert report["background_removal"].startswith("skipped: the photo has real alpha")
    assert report["seconds"] < 60
    # stderr: the table, the matting line and the verdict; nothing from the libraries.
    err = proc.stderr
    for name in PLAN:
        assert f"\n{name} " in err
    assert "all stages ok" in err and "background removal: skipped" in err
    for noise in ("Writing model shards", "it/s]", "There are modules", "Warning", "Traceback"):
        assert noise not in err


def test_saved_weights_are_an_ordinary_weights_folder(saved, tmp_path):
    """Another process runs `imesh generate --weights-dir DIR --offline` on them, with the folder's own
    revisions and reconstruction config, and reports only its own lines on stderr."""
    _, folder = saved
    manifest = json.loads((folder / hub.MANIFEST_NAME).read_text())
    assert set(manifest["revisions"]) == {settings.ZERO123PLUS_REPO, settings.INSTANTMESH_REPO, settings.DINO_REPO}
    assert (folder / settings.INSTANTMESH_REPO / "imesh-lrm-config-instant-mesh-large.json").is_file()
    out = tmp_path / "duck.glb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMESH_REVISION_")}
    proc = subprocess.run(
        [sys.executable, "-m", "instantmesh_cli", "generate", "--example", "-o", str(out), "--weights-dir", str(folder),
         "--offline", "--steps", "1", "--device", "cpu", "--texture-size", "64", "--refine-steps", "1", "--json"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "ok" and record["input"] == "example.png" and out.stat().st_size > 1000
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("example.png: "), proc.stderr  # the per-stage summary alone


def test_save_weights_refuses_a_folder_with_other_files(tmp_path, capsys):
    (tmp_path / "TencentARC").mkdir()
    assert run(["selftest", "--save-weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]


def test_selftest_mattes_the_photo_when_a_rembg_model_is_here(tiny_matting):  # noqa: F811
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.models import Models
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.chain.stages import prepare, read
    from instantmesh_cli.selftest import _job_input

    source, how = _job_input()
    assert how.startswith("rembg u2net") and source.image is not None and source.image.mode == "RGB"
    job = Job(name=source.label, inputs=[source], seed=1, options=PipelineOptions(offline=True))
    models = Models(job.options)
    read(models, job)
    prepare(models, job)
    assert job.prepared.background_removed and job.prepared.matting_model == "u2net"


def test_selftest_reports_the_failing_stage(monkeypatch, capsys, empty_matting_home):  # noqa: F811
    from instantmesh_cli.reconstruction import stage

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(stage, "reconstruct", broken)
    assert run(["selftest", "--device", "cpu", "--json", "--quiet"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    status = {s["name"]: s["status"] for s in report["stages"]}
    assert status["multiview"] == "ok" and status["reconstruct"] == "failed"
    assert status["texture"] == status["export"] == status["check"] == "not run"
    assert captured.err == "imesh: error: selftest failed at reconstruct: RuntimeError: simulated failure\n"


# --------------------------------------------------------------- weights folders


def test_revisions_resolve_env_then_folder_then_pin(monkeypatch):
    repo = settings.INSTANTMESH_REPO
    monkeypatch.delenv(settings.revision_env_var(repo), raising=False)
    assert settings.revision_for(repo) == settings.PINNED_REVISIONS[repo]
    assert settings.hub_file(repo, "x.ckpt", {repo: "mine"}).revision == "mine"
    monkeypatch.setenv(settings.revision_env_var(repo), "env")
    assert settings.hub_file(repo, "x.ckpt", {repo: "mine"}).revision == "env"
    # A folder's own revision: no pinned size/hash applies to its files.
    monkeypatch.delenv(settings.revision_env_var(repo))
    pinned = settings.hub_file(repo, "instant_mesh_base.ckpt")
    assert pinned.sha256 is not None
    assert settings.hub_file(repo, "instant_mesh_base.ckpt", {repo: "mine"}).sha256 is None


def test_declared_revisions_round_trip(tmp_path):
    assert hub.declared_revisions(tmp_path) == {} and hub.declared_revisions(None) == {}
    hub.declare_revisions(tmp_path, {"a/b": "r1"})
    hub.declare_revisions(tmp_path, {"c/d": "r2"})
    assert hub.declared_revisions(tmp_path) == {"a/b": "r1", "c/d": "r2"}
    (tmp_path / hub.MANIFEST_NAME).write_text("{not json")
    assert hub.declared_revisions(tmp_path) == {}


def _config_folder(tmp_path: Path, data) -> Path:
    from instantmesh_cli.hub.manifest import record

    revisions = {settings.INSTANTMESH_REPO: "mine"}
    f = settings.lrm_config_file("instant-mesh-base", revisions)
    path = tmp_path / f.repo_id / f.filename
    path.parent.mkdir(parents=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    hub.declare_revisions(tmp_path, revisions)
    record(tmp_path, f, path)
    return path


def test_a_folder_config_overrides_the_released_architecture(tmp_path):
    from instantmesh_cli.chain.models import folder_lrm_config
    from instantmesh_cli.reconstruction.config import INSTANT_MESH_BASE

    assert folder_lrm_config("instant-mesh-base", None) == INSTANT_MESH_BASE
    assert folder_lrm_config("instant-mesh-base", tmp_path) == INSTANT_MESH_BASE  # the folder has none
    _config_folder(tmp_path, {"grid_res": 192, "encoder": {"num_layers": 6}})
    revisions = hub.declared_revisions(tmp_path)
    cfg = folder_lrm_config("instant-mesh-base", tmp_path, revisions)
    assert cfg.grid_res == 192 and cfg.encoder.num_layers == 6
    assert cfg.transformer_layers == INSTANT_MESH_BASE.transformer_layers and cfg.triplane_dim == 40


@pytest.mark.parametrize("data, message", [
    ({"grid_resolution": 64}, "unknown field 'grid_resolution'"),
    ({"encoder": {"layers": 2}}, "unknown field encoder.'layers'"),
    ({"grid_res": 64.5}, "whole number"),
    ({"kind": "nerf"}, "describes a nerf model"),
    ("{broken", "cannot use"),
])
def test_a_bad_folder_config_is_one_clear_error(tmp_path, data, message):
    from instantmesh_cli.chain.models import folder_lrm_config
    from instantmesh_cli.errors import WeightsError

    _config_folder(tmp_path, data)
    with pytest.raises(WeightsError, match=message.replace("(", r"\(")):
        folder_lrm_config("instant-mesh-base", tmp_path, hub.declared_revisions(tmp_path))


def test_a_changed_folder_config_is_refused(tmp_path):
    from instantmesh_cli.chain.models import folder_lrm_config

    path = _config_folder(tmp_path, {"grid_res": 64})
    path.write_text(json.dumps({"grid_res": 96}))
    with pytest.raises(hub.CorruptWeightsError):
        folder_lrm_config("instant-mesh-base", tmp_path, hub.declared_revisions(tmp_path))


def test_config_dict_round_trip():
    from instantmesh_cli.reconstruction.config import (INSTANT_NERF_LARGE, config_from_dict, config_to_dict,
                                                       tiny_config)

    tiny = tiny_config(INSTANT_NERF_LARGE)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(tiny))), INSTANT_NERF_LARGE) == tiny


def test_generate_example_needs_no_input_file(tmp_path, capsys):
    # Usage is checked before any model loads: --example counts as an input, -o is still required.
    assert run(["generate", "--example"]) == 2
    assert "--output" in capsys.readouterr().err
    assert run(["generate", "-o", str(tmp_path / "x.glb")]) == 2
    assert "--example" in capsys.readouterr().err


def test_two_spawned_worker_processes_give_the_local_bytes(saved, tmp_path):
    """`generate --workers 2` (two CPU workers standing in for two GPUs, spawned, loading the saved
    folder) writes the same bytes as the same batch in one process."""
    from instantmesh_cli.examples import example_photo

    _, folder = saved
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        (src / f"duck{i}.png").write_bytes(example_photo().read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMESH_REVISION_")}
    common = [str(src), "--weights-dir", str(folder), "--offline", "--steps", "1", "--device", "cpu",
              "--texture-size", "64", "--refine-steps", "1", "--no-quality", "--json", "--quiet"]
    runs = {}
    for name, extra in (("local", []), ("pool", ["--workers", "2"])):
        proc = subprocess.run([sys.executable, "-m", "instantmesh_cli", "generate", *common, "-o", f"{tmp_path / name}/",
                               *extra], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs[name] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in runs["pool"]] == ["ok"] * 3
    assert [r["input"] for r in runs["pool"]] == [r["input"] for r in runs["local"]]
    for i in range(3):
        assert (tmp_path / "pool" / f"duck{i}.glb").read_bytes() == (tmp_path / "local" / f"duck{i}.glb").read_bytes()
