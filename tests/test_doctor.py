"""``imesh doctor`` on this (CPU) machine: no CUDA is a warning, the report is complete,
weights are looked up without network, and real failures give exit code 1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from instantmesh_cli import doctor, settings
from instantmesh_cli.cli import run


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


def test_doctor_reports_everything_and_warns_about_missing_cuda(fresh_cache, fake_hub, capsys):
    fake_hub.clear_log()
    code, checks = _report(capsys)
    for name in ("python", "torch", "cuda", "nvdiffrast", "onnxruntime", "rembg model", "weights shared",
                 "hub cache", "imesh cache", "offline mode", *(f"weights {v}" for v in settings.VARIANTS)):
        assert name in checks, name
    for c in checks.values():
        assert c["status"] in ("ok", "warn", "fail")
        assert c["status"] == "ok" or c["fix"], c  # every problem comes with its fix
    if not torch.cuda.is_available():
        assert checks["cuda"]["status"] == "warn" and "CPU" in checks["cuda"]["detail"]
        assert checks["nvdiffrast"]["status"] == "warn" and "pure-torch" in checks["nvdiffrast"]["detail"]
    assert checks["weights instant-mesh-large"]["status"] == "warn"
    assert "imesh download --model instant-mesh-large" in checks["weights instant-mesh-large"]["fix"]
    assert code == 0
    assert fake_hub.log == []  # no network


def test_doctor_sees_downloaded_weights_without_network(fresh_cache, fake_hub, monkeypatch, capsys):
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
    assert checks["weights instant-mesh-base"]["status"] == "warn"
    assert code == 0


def test_offline_without_default_weights_fails(fresh_cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, checks = _report(capsys, "--no-gpu-test")
    assert code == 1
    assert checks["weights instant-mesh-large"]["status"] == "fail"
    assert checks["weights instant-mesh-base"]["status"] == "warn"  # not needed unless chosen
    assert checks["offline mode"]["detail"].startswith("on")


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
