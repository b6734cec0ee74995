"""``imesh bench`` on CPU with tiny weights from the fake hub: every stage measured, the report well formed."""

import json

from instantmesh_cli.bench import STAGE_ROWS, format_report, sample_image
from instantmesh_cli.cli import run
from test_generate import assets, served  # noqa: F401 - fixtures


def test_sample_image_has_real_alpha():
    from instantmesh_cli.images import has_real_alpha

    img = sample_image(128)
    assert img.mode == "RGBA" and has_real_alpha(img)


def test_bench_json_report(served, capsys):
    code = run([
        "bench", "--device", "cpu", "--steps", "1", "--repeat", "1", "--texture-size", "64", "--refine-steps", "2",
        "--no-cold-start", "--batch", "2", "--server-workers", "1", "--json",
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
    # A real `imesh serve` was started, called from new processes, and stopped.
    (server,) = report["server"]
    assert server["workers"] == 1 and server["images"] == 2 and server["ready_s"] > 0
    assert server["call_s"] > server["job_s"] > 0 and server["images_per_min"] > 0
    assert "imesh serve, 1 worker: ready in" in format_report(_report(report))


def test_server_workers_must_be_counts(capsys):
    assert run(["bench", "--server-workers", "1,x", "--device", "cpu"]) == 2
    assert "--server-workers takes worker counts like 1,2" in capsys.readouterr().err


def _report(data: dict):
    from instantmesh_cli.bench import BenchReport

    return BenchReport(**data)


def test_report_text_has_every_stage(served, capsys):
    from instantmesh_cli.bench import BenchReport

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
