"""``imesh generate --ray`` on a real two-node Ray cluster started on this machine.

The cluster (tests/ray_cluster.py) has two nodes of one CPU each; the CLI runs as a
separate driver process, as a user would run it, and its actors load the tiny weights
``imesh selftest --save-weights`` writes, as any process can (``--weights-dir DIR --offline``). One test covers the whole contract, because starting the cluster
is most of the cost on a two-core machine: 20 inputs with broken ones among them, one
actor killed mid-run, every good output written exactly once and byte-equal to a
local run, one JSON line per input as it finishes, work on both nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="the Ray extra is not installed (pip install 'instantmesh-cli[ray]')")

from ray_cluster import two_node_cluster  # noqa: E402
import line_reader  # noqa: E402
from test_generate import FAST, photo  # noqa: E402

ARGS = ["--no-texture", "--no-refine-texture", "--offline", *FAST]
GOOD = 16
BROKEN = {"empty.png": "is empty", "text.png": "not an image", "cut.png": "", "gone.png": "broken link"}

def _inputs(folder: Path) -> list[str]:
    folder.mkdir()
    for i in range(GOOD):
        photo(folder / f"p{i:02d}.png", shift=i % 7)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    (folder / "cut.png").write_bytes((folder / "p00.png").read_bytes()[:300])  # a truncated PNG
    (folder / "gone.png").symlink_to(folder / "deleted.png")
    return sorted(p.name for p in folder.iterdir())


def _env() -> dict[str, str]:
    """The cluster's and the driver's environment: this checkout first on the path, and no
    revision overrides (the weights folder declares its own revisions)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMESH_REVISION_")}
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """The tiny weights folder `imesh selftest --save-weights` keeps (its own revisions and reconstruction config)."""
    from instantmesh_cli.cli import run

    folder = tmp_path_factory.mktemp("tiny") / "weights"
    assert run(["selftest", "--device", "cpu", "--quiet", "--save-weights", str(folder)]) == 0
    return folder


def test_two_node_cluster_batch_with_broken_inputs_and_a_killed_actor(tiny_weights, tmp_path, capsys, monkeypatch):
    from instantmesh_cli.cli import run

    for var in [v for v in os.environ if v.startswith("IMESH_REVISION_")]:
        monkeypatch.delenv(var)
    args = [*ARGS, "--weights-dir", str(tiny_weights)]

    folder = tmp_path / "in"
    names = _inputs(folder)
    assert len(names) == 20

    # The local run the cluster's bytes are checked against: same names, so the same seeds.
    local_in = tmp_path / "local-in"
    local_in.mkdir()
    for name in ("p00.png", "p05.png", "p11.png"):
        shutil.copy(folder / name, local_in / name)
    started = time.perf_counter()
    assert run(["generate", str(local_in), "-o", f"{tmp_path}/local/", "--json", *args]) == 0
    local = {os.path.basename(r["input"]): r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    local_seconds = time.perf_counter() - started

    out = tmp_path / "out"
    env = _env()
    timings = {"local run (3 inputs)": local_seconds}
    started = time.perf_counter()
    with two_node_cluster(env) as cluster:
        timings["cluster start"] = time.perf_counter() - started
        started = time.perf_counter()
        proc = line_reader.start(
            [sys.executable, "-m", "instantmesh_cli", "generate", str(folder), "-o", f"{out}/", "--json",
             "--ray", cluster.address, *args],
            env=env, cwd=tmp_path,
        )
        lines = [line_reader.readline(proc)]
        assert lines[0], line_reader.stderr_now(proc)
        # Once each node has finished a row (so "both nodes did work" cannot hinge on which actor
        # dies first), kill an actor that is in the middle of the batch (each holds up to three rows).
        while {r["node"] for r in map(json.loads, lines) if r["status"] == "ok"} != set(cluster.nodes):
            line = line_reader.readline(proc)
            assert line and len(lines) < 12, (lines, line_reader.stderr_now(proc) if not line else "")
            lines.append(line)
        actors = cluster.actor_processes("ChainActor")
        assert len(actors) == 2, [a.cmdline() for a in cluster.actor_processes("")]
        victim = actors[0]
        victim.send_signal(signal.SIGKILL)
        killed_at = len(lines)
        rest, err = line_reader.finish(proc, timeout=240)
        timings["ray run (20 inputs)"] = time.perf_counter() - started
        lines += rest.splitlines()
        assert not victim.is_running() or victim.status() == "zombie"
        # Resume through file:// URIs (listed and read through pyarrow in the driver and the actors):
        # every finished output is found at the destination and skipped; only the broken inputs run.
        started = time.perf_counter()
        again = subprocess.run(
            [sys.executable, "-m", "instantmesh_cli", "generate", folder.as_uri() + "/", "-o", out.as_uri() + "/",
             "--json", "--skip-existing", "--ray", cluster.address, *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240,
        )
        timings["resumed run"] = time.perf_counter() - started
        started = time.perf_counter()
    timings["cluster stop"] = time.perf_counter() - started
    print("timings:", {k: round(v, 1) for k, v in timings.items()}, file=sys.stderr)

    assert proc.returncode == 1, err  # some inputs failed
    assert "Traceback" not in err and "(raylet)" not in err and "core_worker" not in err  # Ray's chatter kept out
    records = [json.loads(line) for line in lines]
    by_name = {os.path.basename(r["input"]): r for r in records}
    assert len(records) == 20 and sorted(by_name) == names  # one line per input, each once
    assert killed_at < len(records)  # lines kept coming after the kill
    assert [line for line in err.splitlines() if line.startswith("imesh: error:")] == \
           [f"imesh: error: {r['error']}" for r in records if r["status"] == "failed"]  # one line per broken input
    for name, record in by_name.items():
        if name in BROKEN:
            assert record["status"] == "failed" and BROKEN[name] in record["error"] and name in record["error"]
            assert record["output"] == f"{out}/{name[:-4]}.glb" and record["files"] == []
        else:
            assert record["status"] == "ok", record
            assert record["output"] == f"{out}/{name[:-4]}.glb" and record["files"] == [record["output"]]
    # Every good output exactly once, nothing partial or temporary left behind.
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n[:-4]}.glb" for n in names if n not in BROKEN)
    # Both nodes did work.
    nodes = {r["node"] for r in records if r["status"] == "ok"}
    assert set(cluster.nodes) == nodes, (cluster.nodes, nodes)
    # The cluster's outputs and records are the local run's.
    assert {r["engine"] for r in records} == {"ray"}
    volatile = ("input", "output", "files", "seconds", "total_seconds", "node", "engine")
    for name, record in local.items():
        assert (out / f"{name[:-4]}.glb").read_bytes() == (tmp_path / "local" / f"{name[:-4]}.glb").read_bytes()
        assert {k: v for k, v in by_name[name].items() if k not in volatile} == \
               {k: v for k, v in record.items() if k not in volatile}
        assert set(by_name[name]["seconds"]) == set(record["seconds"]) - {"load"}  # actors load before any row
    # The summary on stderr, as for a local batch.
    assert f"{GOOD} done, 4 failed, 0 skipped of 20" in err

    assert again.returncode == 1, again.stderr
    resumed = {os.path.basename(r["input"]): r for r in map(json.loads, again.stdout.splitlines())}
    assert {n: r["status"] for n, r in resumed.items() if r["status"] != "failed"} == \
           {n: "skipped" for n in names if n not in BROKEN}
    assert all(r["input"].startswith("file://") and r["output"].startswith("file://") for r in resumed.values())
    assert {n for n, r in resumed.items() if r["status"] == "failed"} <= set(BROKEN)


def test_without_ray_installed_one_line_says_how_to_get_it(tmp_path, capfd, monkeypatch):
    import builtins

    from instantmesh_cli.cli import run

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    photo(tmp_path / "a.png")
    assert run(["generate", str(tmp_path / "a.png"), "-o", f"{tmp_path}/o/", "--ray", "auto"]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and 'pip install "instantmesh-cli[ray]"' in err


@pytest.mark.parametrize("args, message", [
    (["-o", "-"], "drop --ray"),
    (["-o", "o/", "--gpus", "all"], "drop --gpus"),
    (["-o", "o/", "--ray-actors", "0"], "--ray-actors must be 1 or more"),
])
def test_usage_errors_before_any_cluster(tmp_path, capfd, monkeypatch, args, message):
    from instantmesh_cli.cli import run

    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "a.png")
    assert run(["generate", "a.png", "--ray", "auto", *args]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and message in err
