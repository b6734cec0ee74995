"""The cost of ``--ray`` against a local batch on the same GPUs (target: at most 5 % more time per image).

Usage (on the GPU machine, after ``pip install -e ".[ray]"``):

    python scripts/ray_overhead.py --images 40 [--gpus all] [--keep DIR]

Both runs take the same inputs (copies of the built-in sample photo under different names,
so each gets its own seed), the same full-size random weights (written once, as
``imesh bench --random-weights`` does) and the paper settings. The local batch runs with
``--gpus all`` when there are several GPUs (one worker process per GPU), in this process
otherwise; the Ray batch on a fresh local Ray instance (``--ray local``, one actor per GPU).
Reported per run: the whole wall time (start-up, model loading and cluster start included)
and the steady state — seconds per image between the first and the last finished image,
where start-up no longer counts. Outputs of the two runs are compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(args: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    arrivals = []
    proc = subprocess.Popen([sys.executable, "-m", "instantmesh_cli", *args], stdout=subprocess.PIPE, text=True, env=env)
    records = []
    for line in proc.stdout:
        arrivals.append(time.perf_counter() - started)
        records.append(json.loads(line))
    code = proc.wait()
    wall = time.perf_counter() - started
    steady = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1) if len(arrivals) > 1 else float("nan")
    return {"exit": code, "wall_s": round(wall, 2), "steady_s_per_image": round(steady, 3),
            "ok": sum(r["status"] == "ok" for r in records), "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--gpus", default="all", help="GPUs for the local batch (the Ray run uses every GPU it sees)")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    opts = parser.parse_args()

    import torch

    from instantmesh_cli import random_weights, settings
    from instantmesh_cli.bench import sample_image

    work = opts.keep or Path(tempfile.mkdtemp(prefix="imesh-ray-overhead-"))
    weights = settings.cache_dir() / "bench-random-weights"  # where imesh bench --random-weights writes them
    random_weights.write_random_weights(weights, settings.DEFAULT_VARIANT, device="cuda" if torch.cuda.is_available() else "cpu")
    photos = work / "in"
    photos.mkdir(parents=True, exist_ok=True)
    image = sample_image()
    for i in range(opts.images):
        image.save(photos / f"img{i:03d}.png")
    env = {**os.environ, **random_weights.env_overrides(), "PYTHONUNBUFFERED": "1"}
    common = [str(photos), "--json", "--quiet", "--weights-dir", str(weights), "--offline"]
    local_args = ["generate", *common, "-o", f"{work}/local/"]
    if torch.cuda.device_count() > 1:
        local_args += ["--gpus", opts.gpus]
    local = _run(local_args, env)
    ray = _run(["generate", *common, "-o", f"{work}/ray/", "--ray", "local"], env)
    same = all((work / "local" / p.name).read_bytes() == p.read_bytes() for p in (work / "ray").glob("*.glb"))
    overhead = ray["steady_s_per_image"] / local["steady_s_per_image"] - 1
    report = {
        "gpus": torch.cuda.device_count(), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "images": opts.images,
        "local": {k: v for k, v in local.items() if k != "records"},
        "ray": {k: v for k, v in ray.items() if k != "records"},
        "steady_state_overhead": f"{overhead * 100:+.1f} %",
        "wall_overhead": f"{(ray['wall_s'] / local['wall_s'] - 1) * 100:+.1f} %",
        "outputs_byte_equal": same,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
