"""The rembg matting model through `imesh download`: the pinned table against the installed
rembg, a resumable verified download from a local mirror (tests/matting_mirror.py, real
HTTP), where it lands (rembg's home, or ``--to DIR`` then ``--weights-dir DIR``), offline
mode, and `imesh doctor`'s three states."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import time

import numpy as np
import pytest
from PIL import Image

from instantmesh_cli import doctor, hub
from instantmesh_cli.cli import run
from instantmesh_cli.images import BackgroundRemover, find_matting_model, matting_download, matting_pins
from instantmesh_cli.images.matting_fetch import ensure_matting, export_matting
from matting_fixture import U2NETP_MD5, find_u2netp
from matting_mirror import matting_mirror  # noqa: F401 - fixture
from test_hub import _standin_registry, fresh_cache  # noqa: F401 - fixture and helper

KB = 1 << 10


def _blob(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _matting_row(report: dict) -> dict:
    [row] = [r for r in report["files"] if r["kind"] == "matting"]
    return row


# ------------------------------------------------------------------------ the pinned table
def test_table_matches_the_installed_rembg():
    from importlib.metadata import version

    from instantmesh_cli.images import rembg_sessions

    sessions, _ = rembg_sessions.load()
    for model in ("u2net", "u2netp", "u2net_human_seg", "silueta", "isnet-general-use"):
        assert model in matting_pins.PINNED, model
    for pin in matting_pins.PINNED.values():
        cls = sessions.get(pin.model)
        assert cls is not None, f"rembg {version('rembg')} has no session {pin.model!r}"
        assert cls.is_local() and not cls.requires_credentials(), pin.model
        source = inspect.getsource(cls.download_models)
        urls = re.findall(r"https://[^\s\"']+", source)
        md5s = re.findall(r"md5:([0-9a-f]{32})", source)
        assert urls == [pin.release_url], (pin.model, urls)
        assert md5s == [pin.md5], (pin.model, md5s)
        # rembg stores the file as <session name>.onnx whatever the release calls it
        assert 'fname = f"{cls.name(' in source, pin.model
    assert matting_pins.PINNED["u2netp"].md5 == U2NETP_MD5


def test_known_size_matches_the_genuine_u2netp():
    source = find_u2netp()
    if source is None:
        pytest.skip("the genuine u2netp is not installed aside (tests/matting_fixture.py)")
    pin = matting_pins.PINNED["u2netp"]
    assert source.stat().st_size == pin.size
    assert hashlib.md5(source.read_bytes()).hexdigest() == pin.md5


def test_mirror_url_replaces_the_release_base(monkeypatch):
    pin = matting_pins.PINNED["birefnet-general"]
    monkeypatch.delenv(matting_pins.MIRROR_ENV)
    assert pin.url() == "https://github.com/danielgatis/rembg/releases/download/v0.0.0/BiRefNet-general-epoch_244.onnx"
    monkeypatch.setenv(matting_pins.MIRROR_ENV, "https://mirror.example/models/")
    assert pin.url() == "https://mirror.example/models/BiRefNet-general-epoch_244.onnx"
    assert pin.filename == "birefnet-general.onnx"


# ------------------------------------------------------------------------------ download
def test_first_download_lands_where_rembg_looks_and_the_second_fetches_nothing(matting_mirror):  # noqa: F811
    from rembg.sessions.u2net import U2netSession

    calls: list[tuple[int, int | None]] = []
    result = ensure_matting("u2net", progress=lambda done, total: calls.append((done, total)))
    data = matting_mirror.files["u2net.onnx"]
    assert result.status == "downloaded" and result.source.startswith("127.0.0.1:")
    assert result.path == matting_mirror.home / "models" / "u2net" / "u2net.onnx"
    assert result.path.read_bytes() == data
    assert U2netSession.resolve_existing("u2net.onnx") == str(result.path)  # rembg finds it
    assert not list(matting_mirror.home.rglob("*.part"))
    assert calls[-1] == (len(data), len(data)) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert [g.range for g in matting_mirror.gets()] == [None]
    matting_mirror.log.clear()
    again = ensure_matting("u2net")
    assert (again.status, again.source, again.path) == ("ok", "rembg home", result.path)
    assert matting_mirror.log == []


def test_a_cut_transfer_resumes_with_a_range_from_the_partial_length(matting_mirror, monkeypatch):  # noqa: F811
    data = _blob(300 * KB, seed=1)
    matting_mirror.serve(monkeypatch, "silueta", data)
    matting_mirror.cut_next("silueta.onnx", after_bytes=123_456)
    path = ensure_matting("silueta").path
    assert path.read_bytes() == data
    gets = matting_mirror.gets("silueta.onnx")
    assert [(g.range, g.status) for g in gets] == [(None, 200), ("bytes=123456-", 206)]


def test_a_transfer_that_keeps_breaking_off_resumes_on_the_next_run(matting_mirror, monkeypatch):  # noqa: F811
    data = _blob(200 * KB, seed=2)
    matting_mirror.serve(monkeypatch, "silueta", data)
    matting_mirror.cut_next("silueta.onnx", after_bytes=10_000, times=matting_download.ATTEMPTS)
    target = matting_mirror.home / "models" / "silueta" / "silueta.onnx"
    with pytest.raises(hub.DownloadInterruptedError) as err:
        ensure_matting("silueta")
    message = str(err.value)
    assert "\n" not in message and "broke off" in message and "run the command again" in message
    part = matting_download.part_path(target)
    assert not target.exists() and part.stat().st_size == 10_000 * matting_download.ATTEMPTS
    assert [g.range for g in matting_mirror.gets()][1:] == [f"bytes={10_000 * i}-" for i in
                                                           range(1, matting_download.ATTEMPTS)]
    matting_mirror.log.clear()
    assert ensure_matting("silueta").path.read_bytes() == data  # the next run
    assert [g.range for g in matting_mirror.gets()] == [f"bytes={part_len}-" for part_len in
                                                       [10_000 * matting_download.ATTEMPTS]]
    assert not part.exists()


def test_a_server_that_ignores_range_is_read_from_the_start(matting_mirror, monkeypatch):  # noqa: F811
    data = _blob(150 * KB, seed=3)
    matting_mirror.serve(monkeypatch, "silueta", data)
    target = matting_mirror.home / "models" / "silueta" / "silueta.onnx"
    part = matting_download.part_path(target)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 5000)  # a stale start, which a 200 must overwrite, not extend
    matting_mirror.ignore_range = True
    assert ensure_matting("silueta").path.read_bytes() == data
    assert [(g.range, g.status) for g in matting_mirror.gets()] == [("bytes=5000-", 200)]


def test_a_corrupt_download_is_one_line_and_leaves_no_file(matting_mirror, monkeypatch, capsys):  # noqa: F811
    matting_mirror.serve(monkeypatch, "silueta", _blob(50 * KB, seed=4), md5="0" * 32)
    target = matting_mirror.home / "models" / "silueta" / "silueta.onnx"
    with pytest.raises(hub.CorruptWeightsError) as err:
        ensure_matting("silueta")
    message = str(err.value)
    assert "\n" not in message and "md5" in message and "removed" in message
    assert not target.exists() and not matting_download.part_path(target).exists()
    # A server that announces another size is refused before its body is read.
    matting_mirror.serve(monkeypatch, "silueta", _blob(50 * KB, seed=4))
    monkeypatch.setitem(matting_pins.PINNED, "silueta",
                        matting_pins.MattingFile("silueta", "silueta.onnx", "0" * 32, 999))
    with pytest.raises(hub.CorruptWeightsError, match="expected 999"):
        ensure_matting("silueta")
    assert not target.parent.exists() or not any(target.parent.iterdir())


def test_a_bad_copy_in_rembgs_home_is_repaired(matting_mirror):  # noqa: F811
    target = matting_mirror.home / "models" / "u2net" / "u2net.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the pinned file")
    result = ensure_matting("u2net")
    assert result.status == "repaired" and target.read_bytes() == matting_mirror.files["u2net.onnx"]


def test_offline_downloads_nothing_and_reports_missing(fresh_cache, matting_mirror, monkeypatch, capsys):  # noqa: F811
    # (fresh_cache imports huggingface_hub first: it reads HF_HUB_OFFLINE once, at import.)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.MissingWeightsError) as err:
        ensure_matting("u2net")
    assert "offline" in str(err.value) and "imesh download" in str(err.value) and "\n" not in str(err.value)
    assert run(["download", "--json"]) == 1
    row = _matting_row(json.loads(capsys.readouterr().out))
    assert row["status"] == "missing" and "offline" in row["detail"]
    assert matting_mirror.log == [] and not list(matting_mirror.home.rglob("*.onnx*"))


def test_unreachable_or_wrong_mirror_is_one_line_with_the_fix(matting_mirror, monkeypatch):  # noqa: F811
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv(matting_pins.MIRROR_ENV, f"http://127.0.0.1:{closed}/")
    start = time.perf_counter()
    with pytest.raises(hub.MissingWeightsError) as err:
        ensure_matting("u2net")
    assert time.perf_counter() - start < 2
    assert f"127.0.0.1:{closed}" in str(err.value) and matting_pins.MIRROR_ENV in str(err.value)
    monkeypatch.setenv(matting_pins.MIRROR_ENV, matting_mirror.base_url.removesuffix("rembg/") + "elsewhere/")
    with pytest.raises(hub.MissingWeightsError, match="HTTP 404") as err:
        ensure_matting("u2net")
    assert "\n" not in str(err.value)


# -------------------------------------------------------------------------------- the CLI
def test_download_shows_the_matting_row(fake_hub, fresh_cache, matting_mirror, monkeypatch, capsys):  # noqa: F811
    _standin_registry(fake_hub, monkeypatch)
    assert run(["download", "--model", "instant-nerf-base", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "rembg/u2net.onnx" in captured.out and "downloaded" in captured.out and captured.err == ""
    matting_mirror.log.clear()
    assert run(["download", "--model", "instant-nerf-base", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    row = _matting_row(report)
    assert report["ok"] and row["status"] == "ok" and row["file"] == "u2net.onnx"
    assert row["revision"] == f"md5:{matting_mirror.default.md5}" and row["size"] == matting_mirror.default.size
    assert matting_mirror.log == []
    # --all fetches the chosen matting model too; --no-rembg leaves it out.
    assert run(["download", "--all", "--json", "--no-rembg"]) == 0
    assert not [r for r in json.loads(capsys.readouterr().out)["files"] if r["kind"] == "matting"]


def test_download_matting_choice(fake_hub, fresh_cache, matting_mirror, monkeypatch, capsys):  # noqa: F811
    _standin_registry(fake_hub, monkeypatch)
    matting_mirror.serve(monkeypatch, "isnet-general-use", _blob(20 * KB, seed=5))
    assert run(["download", "--model", "instant-nerf-base", "--matting", "isnet-general-use", "--json"]) == 0
    row = _matting_row(json.loads(capsys.readouterr().out))
    assert row["file"] == "isnet-general-use.onnx" and row["status"] == "downloaded"
    assert [g.name for g in matting_mirror.gets()] == ["isnet-general-use.onnx"]
    assert run(["download", "--matting", "bria-rmbg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bria-rmbg" in err[0] and "u2net" in err[0]


def test_download_reports_a_corrupt_matting_model_as_bad(  # noqa: F811
        fake_hub, fresh_cache, matting_mirror, monkeypatch, capsys):
    _standin_registry(fake_hub, monkeypatch)
    matting_mirror.serve(monkeypatch, "u2net", _blob(10 * KB, seed=6), md5="1" * 32)
    assert run(["download", "--model", "instant-nerf-base", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    row = _matting_row(report)
    assert not report["ok"] and row["status"] == "bad" and "removed" in row["detail"]
    assert {r["status"] for r in report["files"] if r["kind"] == "hub"} == {"downloaded"}


def test_download_to_dir_then_an_offline_run_finds_it_in_the_weights_dir(  # noqa: F811
        fake_hub, fresh_cache, matting_mirror, monkeypatch, tmp_path, capsys):
    from rembg.sessions.u2net import U2netSession

    _standin_registry(fake_hub, monkeypatch)
    out = tmp_path / "export"
    assert run(["download", "--model", "instant-nerf-base", "--to", str(out), "--json"]) == 0
    row = _matting_row(json.loads(capsys.readouterr().out))
    dest = out / "rembg" / "u2net.onnx"
    assert row["status"] == "downloaded" and row["path"] == str(dest)
    assert dest.read_bytes() == matting_mirror.files["u2net.onnx"]
    manifest = json.loads((out / hub.MANIFEST_NAME).read_text())
    assert manifest["matting"]["u2net"] == {"file": "rembg/u2net.onnx", "size": dest.stat().st_size,
                                            "md5": matting_mirror.default.md5}
    assert not list(matting_mirror.home.rglob("*.onnx"))  # nothing written to rembg's home
    # A second export verifies what is there and downloads nothing.
    matting_mirror.log.clear()
    assert run(["download", "--model", "instant-nerf-base", "--to", str(out), "--json"]) == 0
    assert _matting_row(json.loads(capsys.readouterr().out))["status"] == "ok" and matting_mirror.log == []
    # The "air-gapped" side: a fresh, empty rembg home, offline, only the folder.
    other_home = tmp_path / "other-rembg-home"
    other_home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(other_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert find_matting_model("u2net") is None
    assert find_matting_model("u2net", weights_dir=out) == dest
    assert run(["download", "--model", "instant-nerf-base", "--weights-dir", str(out), "--json"]) == 0
    row = _matting_row(json.loads(capsys.readouterr().out))
    assert (row["status"], row["detail"], row["path"]) == ("ok", "weights-dir", str(dest))
    remover = BackgroundRemover("u2net", weights_dir=out)
    assert isinstance(remover.session, U2netSession)  # the named model's own session class and pre-processing
    assert remover.session.inner_session._model_path == str(dest)
    photo = Image.new("RGB", (96, 96), "white")
    photo.paste((200, 30, 30), (24, 30, 72, 80))
    cut = tmp_path / "cut.png"
    photo.save(tmp_path / "photo.png")
    assert run(["prepare", str(tmp_path / "photo.png"), "-o", str(cut), "--weights-dir", str(out), "--offline",
                "--quiet"]) == 0
    alpha = np.asarray(Image.open(cut))[..., 3]
    assert alpha.max() == 255 and alpha.min() == 0  # matted: object kept, white background cut away
    assert matting_mirror.log == [] and not list(other_home.rglob("*.onnx"))
    # The same folder through IMESH_WEIGHTS_DIR.
    monkeypatch.setenv("IMESH_WEIGHTS_DIR", str(out))
    assert find_matting_model("u2net") == dest


def test_the_genuine_u2netp_end_to_end_from_the_weights_dir(matting_mirror, monkeypatch, tmp_path):  # noqa: F811
    from rembg.sessions.u2netp import U2netpSession

    source = find_u2netp()
    if source is None:
        pytest.skip("the genuine u2netp is not installed aside (tests/matting_fixture.py)")
    # Served under its release name and checked against rembg's own pin (not patched).
    matting_mirror.files["u2netp.onnx"] = source.read_bytes()
    out = tmp_path / "export"
    result = export_matting("u2netp", out)
    assert result.status == "downloaded" and result.path == out / "rembg" / "u2netp.onnx"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    remover = BackgroundRemover("u2netp", weights_dir=out)
    assert isinstance(remover.session, U2netpSession)
    photo = Image.new("RGB", (320, 320), (235, 235, 235))
    photo.paste((30, 60, 200), (100, 80, 220, 260))
    alpha = np.asarray(remover.mask(photo))
    inside, outside = alpha[120:220, 130:190].mean(), alpha[:40].mean()
    assert inside > 200 and outside < 40, (inside, outside)


# -------------------------------------------------------------------------------- doctor
def test_doctor_three_states(matting_mirror, monkeypatch, tmp_path):  # noqa: F811
    check = doctor.check_rembg_model()
    assert check.status == "warn" and "imesh download" in check.fix and matting_pins.MIRROR_ENV in check.fix
    path = ensure_matting("u2net").path
    check = doctor.check_rembg_model()
    assert check.status == "ok" and str(path) in check.detail and "md5" in check.detail
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # same size, last byte changed
    check = doctor.check_rembg_model()
    assert check.status == "fail" and "corrupt" in check.detail and "md5" in check.detail
    assert "imesh download" in check.fix
    # In a weights folder: found there, and the fix names that folder.
    out = tmp_path / "w"
    (out / "rembg").mkdir(parents=True)
    (out / "rembg" / "u2net.onnx").write_bytes(b"broken")
    check = doctor.check_rembg_model(weights_dir=out)
    assert check.status == "fail" and f"--to {out}" in check.fix


def test_doctor_cli_fails_on_a_corrupt_model(matting_mirror, fake_hub, capsys):  # noqa: F811
    path = ensure_matting("u2net").path
    path.write_bytes(b"garbage")
    code = run(["doctor", "--json", "--no-gpu-test"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert code == 1 and checks["rembg model"]["status"] == "fail"
