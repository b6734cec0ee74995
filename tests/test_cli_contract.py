"""The command-line contract of `imesh generate` in real processes: signals, stdout, permissions, errors, bytes.

Each test runs `python -m instantmesh_cli` in a subprocess against the tiny weights on the
fake hub (environment only: revisions, caches and endpoint travel as variables).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import line_reader
from test_generate import FAST, assets, photo, served  # noqa: F401 - fixtures


def _env():
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _imesh(*args, **kw):
    return subprocess.run([sys.executable, "-m", "instantmesh_cli", *args], capture_output=True, text=True,
                          env=_env(), timeout=300, **kw)


@pytest.fixture()
def in_process_config_only(served):
    """The tiny reconstruction config reaches subprocesses only through the weights folder."""
    return served


def test_same_inputs_give_byte_identical_outputs_with_provenance(served, tmp_path, capsys):  # noqa: F811
    from instantmesh_cli.cli import run
    from instantmesh_cli.exchange.glb import read_glb

    src = photo(tmp_path / "cup.png")
    a, b = tmp_path / "a" / "cup.glb", tmp_path / "b" / "cup.glb"
    args = ["--texture-size", "64", "--refine-steps", "2", "--seed", "7", *FAST]
    assert run(["generate", str(src), "-o", str(a), *args]) == 0
    assert run(["generate", str(src), "-o", str(b), *args]) == 0
    capsys.readouterr()
    assert a.read_bytes() == b.read_bytes()
    tree, _ = read_glb(a.read_bytes())
    assert tree["asset"]["generator"].startswith("imesh ")
    prov = tree["asset"]["extras"]["provenance"]
    assert prov["steps"] == 1 and prov["texture_size"] == 64 and prov["model"] == "instant-mesh-large"
    from instantmesh_cli.chain.job import derive_seed

    assert prov["seed"] == derive_seed(7, "cup.png")
    assert not any(k in json.dumps(prov) for k in ("time", str(tmp_path)))


def test_outputs_get_the_umask_mode(served, tmp_path, capsys):  # noqa: F811
    from instantmesh_cli.cli import run

    src = photo(tmp_path / "m.png")
    old = os.umask(0o022)
    try:
        assert run(["generate", str(src), "-o", str(tmp_path / "m.glb"), "--no-texture", *FAST]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    assert (tmp_path / "m.glb").stat().st_mode & 0o777 == 0o644


def test_unwritable_output_fails_before_any_work_naming_the_users_path(served, tmp_path, capfd, fake_hub):  # noqa: F811
    from instantmesh_cli.cli import run

    src = photo(tmp_path / "p.png")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fake_hub.clear_log()
    started = time.perf_counter()
    assert run(["generate", str(src), "-o", str(blocker / "sub" / "p.glb"), *FAST]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and str(blocker / "sub" / "p.glb") in err and ".part" not in err
    assert not fake_hub.file_downloads() and time.perf_counter() - started < 5  # no model was fetched or loaded


def test_a_write_that_fails_late_names_the_users_path(served, tmp_path, capfd, monkeypatch):  # noqa: F811
    from instantmesh_cli import fileio
    from instantmesh_cli.cli import run

    src = photo(tmp_path / "late.png")
    out = tmp_path / "late.glb"
    real = os.replace

    def refuse(src, dst):  # only the final rename of this output fails (a full disk, a revoked folder)
        if os.fspath(dst) == str(out):
            raise PermissionError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", refuse)
    assert run(["generate", str(src), "-o", str(out), "--json", "--no-texture", *FAST]) == 1
    captured = capfd.readouterr()
    record = json.loads(captured.out)
    assert record["status"] == "failed" and f"cannot write {out}: Permission denied" in record["error"]
    assert ".part" not in captured.err and not list(tmp_path.glob(".*part*"))


def test_missing_input_is_one_line_named_once_and_debug_after_the_command(served, tmp_path, capfd):  # noqa: F811
    from instantmesh_cli.cli import run

    missing = tmp_path / "nope.png"
    assert run(["generate", str(missing), "-o", str(tmp_path / "o.glb"), *FAST]) == 1
    err = capfd.readouterr().err
    assert err == f"imesh: error: {missing}: no such file\n"
    assert run(["generate", str(missing), "-o", str(tmp_path / "o.glb"), "--debug", *FAST]) == 1
    err = capfd.readouterr().err
    assert "no such file" in err and "no such option" not in err.lower()


def test_dangling_link_in_a_folder_gets_its_own_json_line(served, tmp_path, capsys):  # noqa: F811
    from instantmesh_cli.cli import run

    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "a.png")
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    assert run(["generate", str(folder), "-o", f"{tmp_path}/out/", "--json", "--no-texture", *FAST]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [(os.path.basename(r["input"]), r["status"]) for r in records] == [("a.png", "ok"), ("gone.png", "failed")]
    assert "broken link" in records[1]["error"]
    assert "of 2" in captured.err


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_with_the_finished_jobs_reported(served, tmp_path, signum, code):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):
        photo(folder / f"s{i:02d}.png", shift=i % 5)
    out = tmp_path / "out"
    # The tiny reconstruction config lives in this process only: run the child through a
    # small launcher that applies the same monkeypatch-free setting via its weights env.
    proc = line_reader.start(
        [sys.executable, "-c", _LAUNCHER, "generate", str(folder), "-o", f"{out}/", "--json", "--no-texture", *FAST],
        env=_env(),
    )
    first = line_reader.readline(proc)  # one job finished: now interrupt the batch mid-way
    assert first, line_reader.stderr_now(proc)
    proc.send_signal(signum)
    rest, err = line_reader.finish(proc, timeout=60)
    assert proc.returncode == code, err
    records = [json.loads(line) for line in (first + rest).splitlines()]
    done = sorted(p.name for p in out.iterdir())
    assert "interrupted" in err and "(interrupted)" in err and "Traceback" not in err
    assert [r["status"] for r in records] == ["ok"] * len(records)
    assert sorted(os.path.basename(r["output"]) for r in records) == done  # every finished job reported
    assert 1 <= len(done) < 12 and not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial file


# The child process sees the tiny config the `served` fixture registers in this process.
_LAUNCHER = """
import json, os, sys
from instantmesh_cli.reconstruction import config
cfg = config.tiny_config(config.INSTANT_MESH_LARGE)
config.VARIANT_CONFIGS["instant-mesh-large"] = cfg
from instantmesh_cli import settings
settings.FILE_FACTS.clear()
from instantmesh_cli.cli import run
sys.exit(run(sys.argv[1:]))
"""


def test_a_stop_signal_during_a_jobs_report_waits_for_its_end(capsys):
    """A Ctrl-C that lands half-way through reporting a job (its summary entry taken, its JSON line
    not yet written) must not leave a written output without its line: the report finishes first."""
    import os
    import signal as signals

    from instantmesh_cli.chain.job import Job, JobInput, JobOutputs
    from instantmesh_cli.cli.batch import BatchReport
    from instantmesh_cli.signals import Interrupted, stop_on_signals

    report = BatchReport(2, json_lines=True, quiet=True)
    job = Job(name="a.png", inputs=[JobInput(label="a.png")], seed=1, outputs=JobOutputs())
    job.status = "ok"

    class SignalOnWarning(list):
        def __iter__(self):  # the report reads the warnings between taking the job and writing its line
            os.kill(os.getpid(), signals.SIGINT)
            return super().__iter__()

    job.warnings = SignalOnWarning()
    with stop_on_signals():
        with pytest.raises(Interrupted):
            report.done(job)
    lines = capsys.readouterr().out.splitlines()
    assert report.finished == [job] and len(lines) == 1 and '"input": "a.png"' in lines[0]
