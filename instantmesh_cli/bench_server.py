"""``imesh bench --server-workers 1,2``: a real ``imesh serve`` per worker count, timed from outside.

Everything here is measured the way a user meets it: a new ``imesh generate`` process per call
(interpreter, imports, upload, the job, download, write), and a batch through one client. The
in-process warm time of the same settings is the yardstick the report compares the call to.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from instantmesh_cli.chain.options import PipelineOptions

READY_TIMEOUT_S = 900.0  # full-size weights, one load per worker, a first compile when asked


@dataclass
class ServerMeasure:
    workers: int
    ready_s: float  # `imesh serve` start → listening (every worker has loaded its models)
    call_s: float  # median wall seconds of one `imesh generate` process through the warm server
    job_s: float  # the same calls' job seconds as the server timed them (its stage sum)
    job_stages: dict[str, float]  # those jobs' median seconds per stage, to set beside the in-process run's
    images: int
    images_per_min: float  # one client sending a folder of `images` photos


def model_flags(options: PipelineOptions) -> list[str]:
    """The flags that choose the models (`imesh serve` and `imesh generate` take them alike)."""
    flags = ["--model", options.model, "--device", options.device, "--dtype", options.dtype]
    if options.weights_dir:
        flags += ["--weights-dir", str(options.weights_dir)]
    if options.offline:
        flags += ["--offline"]
    if options.compile:
        flags += ["--compile"]
    return flags


def job_flags(options: PipelineOptions) -> list[str]:
    """The flags of one job's settings that the bench varies (`imesh generate` only)."""
    flags = ["--texture-size", str(options.texture_size), "--refine-steps", str(options.refine_steps)]
    if options.steps:
        flags += ["--steps", str(options.steps)]
    return flags


def _wait_listening(proc: subprocess.Popen, timeout: float) -> str:
    """The server's first address line (printed once it takes requests); its stderr tail if it dies first."""
    found: list[str] = []

    def read() -> None:
        line = proc.stdout.readline()
        if line:
            found.append(line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        err = proc.stderr.read().strip().splitlines()[-1:] if proc.stderr else []
        raise RuntimeError(f"imesh serve did not start within {timeout:.0f} s: {' '.join(err) or 'no output'}")
    return found[0]


def _generate(args: list[str]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "instantmesh_cli", "generate", *args, "--json", "--quiet"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    bad = [r for r in records if r.get("status") != "ok" or r.get("engine") != "server"]
    if done.returncode != 0 or bad or not records:
        why = (bad[0].get("error") if bad else None) or " ".join(done.stderr.strip().splitlines()[-1:])
        raise RuntimeError(f"generate through the server failed: {why or f'exit {done.returncode}'}")
    return seconds, records


def measure_server(options: PipelineOptions, workers: int, image, images: int,
                   log: Callable[[str], None] = lambda s: None, calls: int = 3) -> ServerMeasure:
    """Start ``imesh serve --workers N``, time ``calls`` single-photo calls and a batch of ``images``, stop it."""
    with tempfile.TemporaryDirectory(prefix="imesh-bench-serve-") as tmp:
        root = Path(tmp)
        single = root / "sample.png"
        image.save(single)
        folder = root / "batch"
        folder.mkdir()
        for i in range(images):
            image.save(folder / f"sample_{i:03d}.png")
        socket = root / "serve.sock"
        log(f"imesh serve --workers {workers}: loading")
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "instantmesh_cli", "serve", "--socket", str(socket),
                                 "--workers", str(workers), "--quiet", *model_flags(options)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            address = _wait_listening(proc, READY_TIMEOUT_S)
            ready_s = time.perf_counter() - start
            server = ["--server", address, *job_flags(options), *model_flags(options)]
            # Every worker's first job pays its one-off costs (graph capture, autotuning): one each, together.
            warm = root / "warm"
            warm.mkdir()
            for i in range(workers):
                image.save(warm / f"warm_{i}.png")
            log(f"  warm-up ({workers} job{'s' * (workers > 1)})")
            _generate([str(warm), "-o", f"{root}/warm-out/", *server])
            walls, jobs, stages = [], [], []
            for k in range(calls):
                wall, records = _generate([str(single), "-o", str(root / f"call{k}.glb"), *server])
                walls.append(wall)
                jobs.append(records[0]["total_seconds"])
                stages.append(records[0].get("seconds") or {})
                log(f"  call {k + 1}/{calls}: {wall:.3f} s (job {records[0]['total_seconds']:.3f} s)")
            log(f"  batch of {images}")
            wall, records = _generate([str(folder), "-o", f"{root}/batch-out/", *server])
            if len(records) != images:
                raise RuntimeError(f"the batch through the server gave {len(records)} results for {images} photos")
            names = [name for name in stages[0] if all(name in one for one in stages)]
            return ServerMeasure(workers=workers, ready_s=ready_s, call_s=statistics.median(walls),
                                 job_s=statistics.median(jobs),
                                 job_stages={n: statistics.median(one[n] for one in stages) for n in names},
                                 images=images, images_per_min=60.0 * images / wall)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # drains: nothing is running by now
                try:
                    proc.wait(120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
