"""``imesh prepare``: outputs, exit codes, and one-line errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from instantmesh_cli.cli import run
from matting_fixture import empty_matting_home, tiny_matting  # noqa: F401

RED = (200, 30, 30)


def photo(path, size=(160, 120), box=(40, 30, 99, 89), fmt=None):
    arr = np.full((size[1], size[0], 3), 255, np.uint8)
    x0, y0, x1, y1 = box
    arr[y0 : y1 + 1, x0 : x1 + 1] = RED
    Image.fromarray(arr).save(path, format=fmt)
    return path


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("imesh: error: ") and "Traceback" not in err
    return lines[0]


def test_prepare_writes_centred_rgba_png(tiny_matting, tmp_path, capsys):  # noqa: F811
    src = photo(tmp_path / "photo.png")
    out = tmp_path / "out" / "cut.png"
    assert run(["prepare", str(src), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)  # stdout: only the path
    assert "background removed with u2net" in captured.err
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "RGBA" and img.size[0] == img.size[1]
    a = np.asarray(img.getchannel("A"))
    ys, xs = np.nonzero(a >= 128)
    n = img.size[0]
    assert abs((ys.max() - ys.min() + 1) / n - 0.85) < 0.05
    assert abs(xs.min() - (n - 1 - xs.max())) <= 2 and abs(ys.min() - (n - 1 - ys.max())) <= 2
    assert a[0, 0] == 0
    assert [p.name for p in out.parent.iterdir()] == ["cut.png"]  # no temporary file left


def test_options_ratio_size_and_folder_output(tiny_matting, tmp_path, capsys):  # noqa: F811
    src = photo(tmp_path / "photo.png")
    outdir = tmp_path / "cutouts"
    outdir.mkdir()
    code = run(["prepare", str(src), "-o", str(outdir), "--foreground-ratio", "0.5", "--size", "256"])
    assert code == 0
    out = outdir / "photo.png"
    assert capsys.readouterr().out.strip() == str(out)
    img = Image.open(out)
    assert img.size == (256, 256)
    ys, xs = np.nonzero(np.asarray(img.getchannel("A")) >= 128)
    assert abs((ys.max() - ys.min() + 1) / 256 - 0.5) < 0.04


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")])
def test_other_formats(tiny_matting, tmp_path, fmt, suffix, capsys):  # noqa: F811
    # (no shape check: the tiny model's colour threshold also picks up lossy-codec noise)
    src = photo(tmp_path / f"photo.{suffix}", fmt=fmt)
    assert run(["prepare", str(src), "-o", str(tmp_path / "o.png")]) == 0
    img = Image.open(tmp_path / "o.png")
    assert img.mode == "RGBA" and img.size[0] == img.size[1] and img.getextrema()[3] == (0, 255)


def test_alpha_input_needs_no_model(empty_matting_home, tmp_path, capsys):  # noqa: F811
    arr = np.zeros((100, 100, 4), np.uint8)
    arr[20:60, 30:50] = (*RED, 255)
    src = tmp_path / "cut.png"
    Image.fromarray(arr, "RGBA").save(src)
    out = tmp_path / "o.png"
    assert run(["prepare", str(src), "-o", str(out), "--offline"]) == 0
    assert "kept its alpha" in capsys.readouterr().err
    got = np.asarray(Image.open(out))
    assert got.shape == (47, 47, 4)  # int(40 / 0.85)
    ys, xs = np.nonzero(got[..., 3])
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (40, 20)


def test_no_rembg_keeps_opaque_photo(empty_matting_home, tmp_path, capsys):  # noqa: F811
    src = photo(tmp_path / "p.png")
    out = tmp_path / "o.png"
    assert run(["prepare", str(src), "-o", str(out), "--no-rembg"]) == 0
    img = Image.open(out)
    assert img.size == (int(160 / 0.85),) * 2
    assert "no background removal" in capsys.readouterr().err


def test_png_to_stdout(tiny_matting, tmp_path, capfdbinary):  # noqa: F811
    src = photo(tmp_path / "p.png")
    assert run(["prepare", str(src), "-o", "-"]) == 0
    data = capfdbinary.readouterr().out
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.mode == "RGBA"


def _broken_files(tmp_path):
    good = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(good, "JPEG")
    files = {
        "empty.png": b"",
        "text.png": b"not an image at all\n" * 10,
        "truncated.jpg": good.getvalue()[:300],
        "tiny.png": None,
    }
    paths = []
    for name, data in files.items():
        p = tmp_path / name
        if data is None:
            Image.new("RGB", (8, 8)).save(p)
        else:
            p.write_bytes(data)
        paths.append(p)
    paths += [tmp_path / "missing.png", tmp_path]
    return paths


def test_broken_inputs_exit_1_with_one_line(tiny_matting, tmp_path, capsys):  # noqa: F811
    for path in _broken_files(tmp_path):
        code = run(["prepare", str(path), "-o", str(tmp_path / "x.png")])
        err = capsys.readouterr().err
        assert code == 1, (path, err)
        line = one_error_line(err)
        assert str(path) in line
    assert not (tmp_path / "x.png").exists()


def test_no_foreground_exit_1(tiny_matting, tmp_path, capsys):  # noqa: F811
    src = tmp_path / "white.png"
    Image.new("RGB", (64, 64), "white").save(src)
    assert run(["prepare", str(src), "-o", str(tmp_path / "x.png")]) == 1
    assert "no foreground found in" in one_error_line(capsys.readouterr().err)


def test_missing_model_exit_1(empty_matting_home, tmp_path, capsys):  # noqa: F811
    src = photo(tmp_path / "p.png")
    assert run(["prepare", str(src), "-o", str(tmp_path / "x.png"), "--offline"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "u2net.onnx" in line and str(empty_matting_home) in line


def test_usage_errors_exit_2(tiny_matting, tmp_path, capsys):  # noqa: F811
    src = photo(tmp_path / "p.png")
    assert run(["prepare", str(src), "-o", str(tmp_path / "x.jpg")]) == 2
    assert ".png" in one_error_line(capsys.readouterr().err)
    assert run(["prepare", str(src), "-o", str(tmp_path / "x.png"), "--foreground-ratio", "1.5"]) == 2
    assert "foreground-ratio" in capsys.readouterr().err
    assert run(["prepare", str(src), "-o", str(tmp_path / "x.png"), "--matting", "nope"]) == 2
    assert "unknown matting model" in one_error_line(capsys.readouterr().err)


def test_unwritable_output(tiny_matting, tmp_path, capsys):  # noqa: F811
    src = photo(tmp_path / "p.png")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert run(["prepare", str(src), "-o", str(blocker / "sub" / "x.png")]) == 1
    assert "is not a folder" in one_error_line(capsys.readouterr().err)
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert run(["prepare", str(src), "-o", str(ro / "x.png")]) == 1
            assert "not writable" in one_error_line(capsys.readouterr().err)
        finally:
            ro.chmod(0o700)


def test_subprocess_no_traceback_and_stdin(tiny_matting, tmp_path):  # noqa: F811
    env = dict(os.environ)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    proc = subprocess.run(
        [sys.executable, "-m", "instantmesh_cli", "prepare", str(bad), "-o", str(tmp_path / "x.png")],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "bad.png" in one_error_line(proc.stderr)

    src = photo(tmp_path / "p.png")
    out = tmp_path / "from-stdin.png"
    proc = subprocess.run(
        [sys.executable, "-m", "instantmesh_cli", "prepare", "-", "-o", str(out)],
        input=src.read_bytes(), capture_output=True, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == str(out)
    assert Image.open(out).mode == "RGBA"
