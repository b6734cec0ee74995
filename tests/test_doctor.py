"""``imesh doctor`` on this (CPU) machine: no CUDA is a warning, the report is complete,
weights are looked up without network, the Hub is asked once with a bounded wait, and
real failures give exit code 1."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import socket
import subprocess
import sys
import time

import pytest
import torch

from instantmesh_cli import doctor, settings
from instantmesh_cli.cli import run
from matting_mirror import matting_mirror  # noqa: F401 - fixture: `imesh download` also fetches the rembg model


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "imesh"))
    return tmp_path


def _report(capsys, *args: str) -> tuple[int, dict[str, dict]]:
    code = run(["doctor", "--json", *args])
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] == (code == 0)
    return code, {c["name"]: c for c in data["checks"]}


def test_doctor_reports_everything_and_warns_about_missing_cuda(fresh_cache, fake_hub, monkeypatch, capsys):
    served = fake_hub.new_commit(settings.ZERO123PLUS_REPO, {"model_index.json": b"{}"})
    monkeypatch.setenv(settings.revision_env_var(settings.ZERO123PLUS_REPO), served)
    fake_hub.clear_log()
    code, checks = _report(capsys)
    for name in ("python", "bytecode", "torch", "cuda", "nvdiffrast", "triton", "onnxruntime", "rembg model", "hub", "hf_xet",
                 "weights shared", "hub cache", "imesh cache", "offline mode",
                 *(f"weights {v}" for v in settings.VARIANTS)):
        assert name in checks, name
    for c in checks.values():
        assert c["status"] in ("ok", "warn", "fail")
        assert c["status"] == "ok" or c["fix"], c  # every problem comes with its fix
    if not torch.cuda.is_available():
        assert checks["cuda"]["status"] == "warn" and "CPU" in checks["cuda"]["detail"]
        assert checks["nvdiffrast"]["status"] == "warn" and "pure-torch" in checks["nvdiffrast"]["detail"]
        assert checks["triton"] == {**checks["triton"], "status": "ok", "detail": "not used on the CPU"}
    assert checks["weights instant-mesh-large"]["status"] == "warn"
    assert "imesh download --model instant-mesh-large" in checks["weights instant-mesh-large"]["fix"]
    assert checks["hub"]["status"] == "ok" and fake_hub.endpoint in checks["hub"]["detail"]
    assert code == 0
    # The only network use: one metadata request for the probed file; no file body.
    assert [(r.method, r.path) for r in fake_hub.log if "/resolve/" in r.path] == [
        ("HEAD", f"/{settings.ZERO123PLUS_REPO}/resolve/{served}/model_index.json")]


def test_hub_check_is_bounded_against_a_closed_port_and_a_silent_hub(fake_hub, monkeypatch):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    start = time.perf_counter()
    check = doctor.check_hub(endpoint=f"http://127.0.0.1:{closed}")
    assert time.perf_counter() - start < 2
    assert check.status == "warn" and f":{closed}" in check.detail and "ConnectError" in check.detail
    assert "--weights-dir" in check.fix and "\n" not in check.detail
    monkeypatch.setenv("IMESH_HUB_TIMEOUT", "1")
    with fake_hub.hanging():  # accepts the connection, never answers
        start = time.perf_counter()
        check = doctor.check_hub()
        elapsed = time.perf_counter() - start
    assert 0.9 <= elapsed < 3
    assert check.status == "warn" and "Timeout" in check.detail


def test_hub_check_tells_a_missing_pinned_revision_from_no_network(fake_hub, monkeypatch):
    monkeypatch.setenv(settings.revision_env_var(settings.ZERO123PLUS_REPO), "e" * 40)
    check = doctor.check_hub()
    assert check.status == "warn" and "answers, but" in check.detail
    assert settings.revision_env_var(settings.ZERO123PLUS_REPO) in check.fix
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.clear_log()
    check = doctor.check_hub()
    assert check.status == "ok" and "offline" in check.detail and fake_hub.log == []


def test_hf_xet_line(monkeypatch):
    real = importlib.metadata.version

    def without_xet(name: str) -> str:
        if name == "hf_xet":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    if importlib.util.find_spec("hf_xet") is not None:
        assert doctor.check_hf_xet().status == "ok"
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        check = doctor.check_hf_xet()
        assert check.status == "warn" and "HF_HUB_DISABLE_XET" in check.fix
    monkeypatch.setattr(importlib.metadata, "version", without_xet)
    check = doctor.check_hf_xet()
    assert check.status == "warn" and "not installed" in check.detail and "hf_xet" in check.fix


def test_doctor_sees_downloaded_weights_without_network(fresh_cache, fake_hub, monkeypatch, capsys,
                                                        matting_mirror):  # noqa: F811
    for repo in settings.PINNED_REVISIONS:
        files = {f.filename: f"{repo}/{f.filename}".encode() for f in settings.all_files() if f.repo_id == repo}
        monkeypatch.setenv(settings.revision_env_var(repo), fake_hub.new_commit(repo, files))
    assert run(["download", "--model", "instant-nerf-large"]) == 0
    capsys.readouterr()
    fake_hub.clear_log()
    with fake_hub.down():
        code, checks = _report(capsys, "--no-gpu-test")
    assert checks["weights shared"]["status"] == "ok"
    assert checks["weights instant-nerf-large"]["status"] == "ok"
    assert checks["rembg model"]["status"] == "ok"  # `imesh download` fetched it too
    assert checks["weights instant-mesh-base"]["status"] == "warn"
    assert checks["hub"]["status"] == "warn"  # refused: a warning, cached weights still work
    assert code == 0


def test_offline_without_default_weights_fails(fresh_cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, checks = _report(capsys, "--no-gpu-test")
    assert code == 1
    assert checks["weights instant-mesh-large"]["status"] == "fail"
    assert checks["weights instant-mesh-base"]["status"] == "warn"  # not needed unless chosen
    assert checks["offline mode"]["detail"].startswith("on")
    assert checks["hub"]["status"] == "ok" and "not contacted" in checks["hub"]["detail"]


def test_missing_weights_dir_is_a_failure(fresh_cache, tmp_path, capsys):
    code, checks = _report(capsys, "--weights-dir", str(tmp_path / "absent"), "--no-gpu-test")
    assert code == 1 and checks["weights dir"]["status"] == "fail"


def test_doctor_text_report_in_a_fresh_process(fresh_cache):
    proc = subprocess.run([sys.executable, "-m", "instantmesh_cli", "doctor", "--no-gpu-test"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert any(line.startswith("ok") and "python" in line for line in lines)
    assert "failures" in lines[-1] and "Traceback" not in proc.stderr


def test_a_crashing_probe_becomes_a_failure_line(monkeypatch):
    monkeypatch.setattr(doctor, "check_onnxruntime", lambda: 1 / 0)
    checks = doctor.run_checks(gpu_test=False)
    bad = [c for c in checks if c.name == "onnxruntime"]
    assert bad and bad[0].status == "fail" and "ZeroDivisionError" in bad[0].detail
    assert doctor.exit_code(checks) == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA and a working nvdiffrast build")
def test_nvdiffrast_rasterizes_the_test_triangle():
    covered = doctor.rasterize_test_triangle("cuda")
    assert abs(covered - 0.32) < 0.05


def test_bytecode_line_names_the_variable_that_makes_every_start_compile(tmp_path, monkeypatch):
    from instantmesh_cli import bytecode, doctor

    bare = tmp_path / "torch"
    (bare / "__pycache__").mkdir(parents=True)
    monkeypatch.setattr(bytecode, "package_folder", lambda name: bare)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    check = doctor.check_bytecode()
    assert check.status == doctor.WARN and "PYTHONDONTWRITEBYTECODE" in check.detail and "unset" in check.fix
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert doctor.check_bytecode().status == doctor.OK
    (bare / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # compiled already: nothing to write, nothing lost
    assert doctor.check_bytecode().status == doctor.OK
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    assert str(tmp_path / "prefix") in doctor.check_bytecode().detail
