"""``imesh bench``: per-stage timings and peak GPU memory of the whole chain on this machine.

Every figure is measured here, on the built-in sample image: a warm-up run first
(excluded), then ``repeat`` runs whose per-stage medians are reported. Stage times
are taken with the device synchronised before and after, so they add up to the
wall time of a run; the peak memory of a stage is ``torch.cuda.max_memory_allocated``
during it, resident weights included (as in reference/baseline.md).

In the same run, the plain configuration — fp32, eager, every FlexiCubes cube
evaluated — runs once as the baseline, so each stage's speed-up is a measured ratio.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from instantmesh_cli import settings
from instantmesh_cli.bench_report import BenchReport
from instantmesh_cli.bench_server import job_flags, model_flags
from instantmesh_cli.chain.job import Job, JobInput, JobOutputs
from instantmesh_cli.chain.models import Models
from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.chain.run import BatchRunner, run_job
from instantmesh_cli.chain.stages import PHOTO_TO_MESH
from instantmesh_cli.device import device_name
from instantmesh_cli.timing import StageTimer

def sample_image(size: int = 512):
    """The built-in sample: a shaded toy (sphere on a box) on a transparent background."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    rgba = np.zeros((size, size, 4), np.float32)
    # box: lower half
    box = (np.abs(xx - 0.5) < 0.28) & (yy > 0.52) & (yy < 0.86)
    rgba[box] = [0.85, 0.35, 0.2, 1.0]
    rgba[box, :3] *= (0.75 + 0.25 * (1 - (yy[box] - 0.52) / 0.34))[:, None]
    # sphere: upper half, Lambert shading from the top-left
    dx, dy = (xx - 0.5) / 0.24, (yy - 0.36) / 0.24
    r2 = dx**2 + dy**2
    ball = r2 < 1
    nz = np.sqrt(np.clip(1 - r2, 0, 1))
    shade = np.clip(-0.5 * dx - 0.6 * dy + 0.62 * nz, 0.1, 1.0)
    rgba[ball] = np.stack([0.2 * shade, 0.45 * shade + 0.1, 0.9 * shade, np.ones_like(shade)], -1)[ball]
    return Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA")


@dataclass
class BenchOptions:
    model: str = "instant-mesh-large"
    steps: int | None = None
    scheduler: str = "euler-a"
    repeat: int = 3
    batch: int = 0
    random_weights: bool = False
    baseline: bool = True
    cold_start: bool = True
    device: str = "auto"
    dtype: str = "auto"
    texture_size: int = 1024
    refine_steps: int = 20
    compile: bool = False
    weights_dir: Path | None = None
    offline: bool | None = None
    server_workers: tuple[int, ...] = ()  # also time a real `imesh serve` with each of these worker counts


@dataclass
class RunMeasure:
    seconds: dict[str, float] = field(default_factory=dict)
    peak_gib: dict[str, float] = field(default_factory=dict)
    faces_extracted: int = 0
    faces_textured: int = 0
    psnr_before: float | None = None
    psnr_after: float | None = None
    overlap_s: float = 0.0  # decimation + UV atlas seconds hidden behind the refinement (not in ``seconds``)


def measure_run(models: Models, image, seed: int = 42) -> RunMeasure:
    """One photo → textured GLB file through the chain, every stage and sub-stage timed."""
    timer = StageTimer(models.device, memory=True)
    with tempfile.TemporaryDirectory() as tmp:
        job = Job(name="sample.png", inputs=[JobInput("sample.png", image=image)], seed=seed, options=models.options,
                  outputs=JobOutputs(mesh=Path(tmp) / "sample.glb"))
        run_job(models, job, PHOTO_TO_MESH, timer)
    if job.status != "ok":
        raise RuntimeError(f"bench run failed: {job.error}")
    m = RunMeasure()
    t, peaks = job.timings, timer.peaks_gib
    m.seconds["prepare"] = t.get("read", 0.0) + t["prepare"]
    m.seconds["multiview"] = t["multiview"]
    # The reconstruct stage in its parts; what the parts do not cover (input conversion) counts as planes.
    recon = job.reconstruction
    for key in ("planes", "surface", "cleanup"):
        m.seconds[key] = recon.timings.get(key, 0.0)
        m.peak_gib[key] = peaks.get("reconstruct", 0.0)
    m.seconds["planes"] += t["reconstruct"] - sum(recon.timings.values())
    m.faces_extracted = recon.mesh.num_faces
    report = job.texture_report
    if report is not None:
        parts = {
            "refine": report.timings.get("refine", 0.0) + report.timings.get("refine_setup", 0.0),
            "decimate": report.timings.get("decimate", 0.0),
            "uv": report.timings.get("uv", 0.0),
            "bake": report.timings.get("bake", 0.0) + report.timings.get("vertex_colors", 0.0),
        }
        # Decimation and the atlas ran beside the refinement: the rows keep only what they added to the
        # stage's wall time, in proportion, so that the rows still add up to it.
        atlas_s = parts["decimate"] + parts["uv"]
        m.overlap_s = min(report.overlap_s, atlas_s)
        if atlas_s > 0:
            for key in ("decimate", "uv"):
                parts[key] *= 1 - m.overlap_s / atlas_s
        parts["bake"] += t["texture"] - sum(parts.values())  # what is left: glue between parts
        m.seconds.update(parts)
        m.peak_gib.update({k: peaks.get("texture", 0.0) for k in parts})
        m.psnr_before, m.psnr_after = report.psnr_before, report.psnr_after
    m.faces_textured = job.mesh.num_faces
    if "quality" in t:
        m.seconds["quality"] = t["quality"]
        m.peak_gib["quality"] = peaks.get("quality", 0.0)
    m.seconds["export"] = t["export"]
    m.peak_gib["multiview"] = peaks.get("multiview", 0.0)
    return m


def _warm_runs(models: Models, image, repeat: int, log: Callable[[str], None]) -> tuple[RunMeasure, list[RunMeasure]]:
    """A warm-up run (what the first run in a process costs), then ``repeat`` timed ones."""
    log("warm-up run")
    first = measure_run(models, image)
    measures = []
    for i in range(repeat):
        log(f"run {i + 1}/{repeat}")
        measures.append(measure_run(models, image))
    return first, measures


def _median_run(measures: list[RunMeasure]) -> tuple[dict[str, float], dict[str, float]]:
    keys = measures[0].seconds.keys()
    seconds = {k: statistics.median(m.seconds[k] for m in measures) for k in keys}
    peaks = {k: max(m.peak_gib.get(k, 0.0) for m in measures) for k in measures[0].peak_gib}
    return seconds, peaks


def _free(models: Models | None) -> None:
    import gc

    import torch

    del models
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda s: None) -> BenchReport:
    import torch

    notes: list[str] = []
    env: dict[str, str] = {}
    weights_dir = opts.weights_dir
    offline = opts.offline
    if opts.random_weights:
        from instantmesh_cli import random_weights

        weights_dir = Path(weights_dir or settings.cache_dir() / "bench-random-weights")
        env = random_weights.env_overrides()
        offline = True
        if not random_weights.is_complete(weights_dir, opts.model):
            log(f"writing full-size random weights to {weights_dir} (once)")
        device_for_init = "cuda" if torch.cuda.is_available() else "cpu"
        random_weights.write_random_weights(weights_dir, opts.model, device=device_for_init)
        notes.append(
            "random weights: full-size models from the released configs; the reconstruction checkpoint's SDF and "
            "colour heads are designed to give a closed surface of realistic size (see instantmesh_cli/random_weights.py); "
            "timings are real, the views and mesh are not meaningful"
        )
    image = sample_image()
    fast = PipelineOptions(
        model=opts.model, steps=opts.steps, scheduler=opts.scheduler, texture_size=opts.texture_size,
        refine_steps=opts.refine_steps, device=opts.device, dtype=opts.dtype, compile=opts.compile,
        weights_dir=weights_dir, offline=offline,
    )
    with _environment(env):
        models = Models(fast)
        device = models.device
        name = device_name(device)
        log(f"loading models on {name}")
        load_s = models.load()
        first, measures = _warm_runs(models, image, max(1, opts.repeat), log)
        stages, peaks = _median_run(measures)
        overall_peak = max(peaks.values()) if peaks else None
        report = BenchReport(
            device=name,
            torch=torch.__version__,
            weights="random (full size)" if opts.random_weights else "released",
            settings={
                "model": opts.model, "steps": opts.steps or 75, "scheduler": opts.scheduler, "views": 6,
                "dtype": str(models.dtype).replace("torch.", ""), "texture_size": opts.texture_size,
                "refine_steps": opts.refine_steps, "compile": opts.compile,
            },
            stages=stages, stage_peaks_gib=peaks, total_s=sum(stages.values()), peak_gib=overall_peak,
            runs=len(measures), faces_extracted=measures[-1].faces_extracted,
            faces_textured=measures[-1].faces_textured, psnr_before=measures[-1].psnr_before,
            psnr_after=measures[-1].psnr_after, load_s=load_s, notes=notes,
            first_run_extra_s=sum(first.seconds.values()) - sum(stages.values()),
            warm_up_s=models.warm_up_s, texture_overlap_s=statistics.median(m.overlap_s for m in measures),
        )
        passes = models.multiview.compiled
        if passes is not None:
            report.compile_first_calls_s = dict(passes.stats.first_calls)
        if opts.batch > 0:
            report.batch = _batch_throughput(models, image, opts.batch, log)
        _free(models)
        models = None
        if opts.compile:
            log("the same runs without --compile (the default)")
            default = Models(replace(fast, compile=False))
            default.load()
            seconds, peaks = _median_run(_warm_runs(default, image, max(1, opts.repeat), log)[1])
            report.uncompiled = seconds
            report.uncompiled_peak_gib = max(peaks.values()) if peaks else None
            _free(default)
        if opts.baseline:
            log("baseline: fp32, eager, every FlexiCubes cube")
            plain = replace(fast, dtype="fp32", compile=False, surface_only=False)
            base = Models(plain)
            base.load()
            measure_run(base, image)  # warm-up
            m = measure_run(base, image)
            report.baseline = m.seconds
            report.baseline_peak_gib = max(m.peak_gib.values()) if m.peak_gib else None
            _free(base)
        if opts.cold_start:
            cold = _cold_start(fast, image, log)
            if cold is not None:
                report.cold_start_s, report.cold_start_parts = cold
                inside = sum(v for k, v in cold[1].items() if k not in ("start-up", "load"))
                report.cold_start_first_run_extra_s = inside - report.total_s
        if opts.server_workers:
            from instantmesh_cli.bench_server import measure_server

            images = opts.batch or 12
            report.server = [asdict(measure_server(fast, n, image, images, log)) for n in opts.server_workers]
    return report


def _batch_throughput(models: Models, image, n: int, log: Callable[[str], None]) -> dict[str, float]:
    """Images per minute for ``n`` image files through the batch runner, overlapped and sequential."""
    out: dict[str, float] = {"images": float(n)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = []
        for i in range(n):
            path = folder / f"sample_{i:03d}.png"
            image.save(path)
            sources.append(path)
        for mode, overlap in (("overlapped", True), ("sequential", False)):
            log(f"batch of {n}, {mode}")
            jobs = [
                Job(name=p.name, inputs=[JobInput(p.name, path=p)], seed=i, options=models.options,
                    outputs=JobOutputs(mesh=folder / mode / f"{p.stem}.glb"))
                for i, p in enumerate(sources)
            ]
            done: list[Job] = []
            start = time.perf_counter()
            BatchRunner(models, PHOTO_TO_MESH, overlap=overlap).run(jobs, done.append)
            seconds = time.perf_counter() - start
            failed = [j for j in done if j.status != "ok"]
            if failed or len(done) != n:
                raise RuntimeError(f"batch run failed: {failed[0].error if failed else 'jobs missing'}")
            out[f"{mode}_images_per_min"] = 60.0 * n / seconds
    return out


def _cold_start(options: PipelineOptions, image, log: Callable[[str], None]) -> tuple[float, dict[str, float]] | None:
    """Seconds from process start to the first textured GLB (weights already cached), and the process's own stage times.

    What the stages do not cover is start-up: the interpreter and the library imports.
    """
    log("cold start (new process)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "sample.png"
        image.save(src)
        # --no-server: a running `imesh serve` would answer instead of a new process loading its models.
        # With --compile, a second process: compilation comes from the on-disk caches.
        cmd = [sys.executable, "-m", "instantmesh_cli", "generate", str(src), "-o", str(Path(tmp) / "sample.glb"),
               "--quiet", "--json", "--no-server", *model_flags(options), *job_flags(options)]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            log(f"cold start run failed: {done.stderr.strip().splitlines()[-1:]}")
            return None
        import json

        parts = dict(json.loads(done.stdout.splitlines()[-1])["seconds"])
        parts["start-up"] = seconds - sum(parts.values())
        return seconds, parts
