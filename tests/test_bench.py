"""``imesh bench`` on CPU with tiny weights from the fake hub: every stage measured, the report well formed."""

import json
from dataclasses import asdict

from instantmesh_cli.bench import sample_image
from instantmesh_cli.bench_report import STAGE_ROWS, format_report
from instantmesh_cli.cli import run
from test_generate import assets, served  # noqa: F401 - fixtures


def test_sample_image_has_real_alpha():
    from instantmesh_cli.images import has_real_alpha

    img = sample_image(128)
    assert img.mode == "RGBA" and has_real_alpha(img)


def test_bench_json_report(served, capsys):
    code = run([
        "bench", "--device", "cpu", "--steps", "1", "--repeat", "1", "--texture-size", "64", "--refine-steps", "2",
        "--no-cold-start", "--batch", "2", "--json",
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert set(report["stages"]) == {key for key, _ in STAGE_ROWS}
    assert all(v > 0 for v in report["stages"].values())
    assert report["total_s"] > 0 and report["faces_extracted"] > 100
    assert set(report["baseline"]) == set(report["stages"])
    assert report["batch"]["overlapped_images_per_min"] > 0 and report["batch"]["sequential_images_per_min"] > 0
    assert report["weights"] == "released" and report["device"] == "CPU"


def test_a_real_server_is_started_called_from_new_processes_and_stopped(tmp_path, monkeypatch):
    from instantmesh_cli.bench_report import BenchReport
    from instantmesh_cli.bench_server import measure_server
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.random_weights import write_tiny_weights

    # A weights folder, not the in-process fake hub: `imesh serve` and `generate` are other processes.
    weights = write_tiny_weights(tmp_path / "weights")
    monkeypatch.setenv("IMESH_CACHE_DIR", str(tmp_path / "cache"))
    options = PipelineOptions(device="cpu", steps=1, texture_size=64, refine_steps=1, weights_dir=weights, offline=True)
    m = measure_server(options, 1, sample_image(128), images=2, calls=1)
    assert m.workers == 1 and m.images == 2 and m.ready_s > 0
    assert m.call_s > m.job_s > 0 and m.images_per_min > 0
    assert {"read", "multiview", "export"} <= set(m.job_stages) and 0 < sum(m.job_stages.values()) <= m.job_s + 1e-3
    report = BenchReport(device="CPU", torch="x", weights="released", settings={
        "model": "m", "steps": 1, "scheduler": "euler-a", "dtype": "float32", "texture_size": 64, "refine_steps": 1},
        stages={}, stage_peaks_gib={}, total_s=m.job_s, peak_gib=None, runs=1, faces_extracted=1, faces_textured=1,
        psnr_before=None, psnr_after=None, load_s=1.0, server=[asdict(m)])
    text = format_report(report)
    assert f"imesh serve, 1 worker: ready in {m.ready_s:.1f} s" in text
    assert f"client process {m.call_s - m.job_s:.3f} s" in text and f"multiview {m.job_stages['multiview']:.3f}" in text


def test_server_workers_must_be_counts(capsys):
    assert run(["bench", "--server-workers", "1,x", "--device", "cpu"]) == 2
    assert "--server-workers takes worker counts like 1,2" in capsys.readouterr().err


def test_report_text_has_every_stage(served, capsys):
    from instantmesh_cli.bench_report import BenchReport

    stages = {key: 0.1 for key, _ in STAGE_ROWS}
    r = BenchReport(
        device="GPU", torch="x", weights="random (full size)", settings={"model": "m", "steps": 75, "scheduler": "euler-a", "dtype": "float16", "texture_size": 1024, "refine_steps": 20},
        stages=stages, stage_peaks_gib={}, total_s=1.0, peak_gib=2.0, runs=3, faces_extracted=10, faces_textured=5,
        psnr_before=20.0, psnr_after=25.0, load_s=1.0, baseline={k: 0.2 for k in stages}, notes=["random"],
    )
    text = format_report(r)
    for _, label in STAGE_ROWS:
        assert label in text
    assert "2.0x" in text and "note: random" in text
    assert "without --compile" not in text
    r.uncompiled, r.uncompiled_peak_gib = {**stages, "multiview": 0.5}, 4.5
    r.compile_first_calls_s = {"write": 60.0, "read": 58.0}
    text = format_report(r)
    assert "without --compile (the default, same process): multi-view diffusion 0.500 s, total 1.500 s, " \
           "peak 4.50 GiB (--compile: 0.100 s, 1.000 s)" in text
    assert "first call of each pass in this process (compilation included): write 60.0 s, read 58.0 s" in text
