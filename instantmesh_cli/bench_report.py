"""What ``imesh bench`` reports: the report's fields (also its ``--json``) and its plain-text table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Stage rows in report order: (key, label).
STAGE_ROWS = (
    ("prepare", "prepare (cut-out)"),
    ("multiview", "multi-view diffusion"),
    ("planes", "views → triplane"),
    ("surface", "mesh extraction"),
    ("cleanup", "mesh clean-up"),
    ("refine", "texture refinement"),
    ("decimate", "decimation"),
    ("uv", "UV atlas"),
    ("bake", "texture bake"),
    ("quality", "quality check"),
    ("export", "GLB export"),
)


@dataclass
class BenchReport:
    device: str
    torch: str
    weights: str
    settings: dict
    stages: dict[str, float]  # median seconds
    stage_peaks_gib: dict[str, float]
    total_s: float
    peak_gib: float | None
    runs: int
    faces_extracted: int
    faces_textured: int
    psnr_before: float | None
    psnr_after: float | None
    load_s: float
    first_run_extra_s: float = 0.0  # the first run's time over the warm median: compilation, graph capture, library set-up
    # Of load_s: the warm-up (the passes compiled with --compile, the CUDA graph captured).
    warm_up_s: float = 0.0
    compile_first_calls_s: dict[str, float] | None = None  # --compile: each pass's first call (compilation included)
    texture_overlap_s: float = 0.0  # median RunMeasure.overlap_s
    # --compile: the same runs without it (the default), in the same process, side by side.
    uncompiled: dict[str, float] | None = None
    uncompiled_peak_gib: float | None = None
    baseline: dict[str, float] | None = None
    baseline_peak_gib: float | None = None
    cold_start_s: float | None = None
    cold_start_parts: dict[str, float] | None = None  # seconds inside the new process, by stage
    # That process's stage seconds over this one's warm median: what on-disk caches do not save.
    cold_start_first_run_extra_s: float | None = None
    batch: dict[str, float] | None = None
    server: list[dict] | None = None  # bench_server.ServerMeasure per worker count
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def format_report(r: BenchReport) -> str:
    """The report as a plain-text table (what ``imesh bench`` prints without --json)."""
    s = r.settings
    lines = [
        f"imesh bench — {r.device}, torch {r.torch}, {r.weights} weights, {s['model']}, "
        f"{s['steps']} steps {s['scheduler']}, {s['dtype']}, texture {s['texture_size']}², refine {s['refine_steps']} steps",
        f"median of {r.runs} warm runs; baseline = fp32, eager, every FlexiCubes cube",
        "",
        f"{'stage':<24}{'seconds':>10}{'peak GiB':>10}{'baseline s':>12}{'speed-up':>10}",
    ]
    for key, label in STAGE_ROWS:
        if key not in r.stages:
            continue
        sec = r.stages[key]
        peak = r.stage_peaks_gib.get(key)
        base = (r.baseline or {}).get(key)
        ratio = f"{base / sec:.1f}x" if base and sec > 0 else ""
        lines.append(
            f"{label:<24}{sec:>10.3f}{'' if peak is None else f'{peak:.2f}':>10}"
            f"{'' if base is None else f'{base:.3f}':>12}{ratio:>10}"
        )
    base_total = sum(r.baseline.values()) if r.baseline else None
    ratio = f"{base_total / r.total_s:.1f}x" if base_total else ""
    peak = "" if r.peak_gib is None else f"{r.peak_gib:.2f}"
    lines.append(f"{'total':<24}{r.total_s:>10.3f}{peak:>10}{'' if base_total is None else f'{base_total:.3f}':>12}{ratio:>10}")
    lines.append("")
    if r.texture_overlap_s > 0:
        lines.append(f"decimation + UV atlas also ran {r.texture_overlap_s:.3f} s on the CPU beside the texture "
                     "refinement (in no row above)")
    lines.append(f"faces: {r.faces_extracted} extracted, {r.faces_textured} textured; model load {r.load_s:.1f} s "
                 f"(of which warm-up {r.warm_up_s:.1f} s: compiled passes, CUDA graph); "
                 f"first run {r.first_run_extra_s:+.2f} s over warm")
    if r.compile_first_calls_s is not None:
        calls = ", ".join(f"{k} {v:.1f} s" for k, v in r.compile_first_calls_s.items())
        lines.append(f"--compile: first call of each pass in this process (compilation included): {calls}")
    if r.uncompiled is not None:
        default_total = sum(r.uncompiled.values())
        peak = f", peak {r.uncompiled_peak_gib:.2f} GiB" if r.uncompiled_peak_gib else ""  # none measured on a CPU
        lines.append(f"without --compile (the default, same process): multi-view diffusion "
                     f"{r.uncompiled.get('multiview', 0.0):.3f} s, total {default_total:.3f} s{peak} "
                     f"(--compile: {r.stages.get('multiview', 0.0):.3f} s, {r.total_s:.3f} s)")
    if r.psnr_before is not None:
        lines.append(f"refinement PSNR on the input views: {r.psnr_before:.2f} → {r.psnr_after:.2f} dB")
    if r.baseline_peak_gib is not None:
        lines.append(f"baseline peak GPU memory: {r.baseline_peak_gib:.2f} GiB")
    if r.cold_start_s is not None:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in (r.cold_start_parts or {}).items())
        lines.append(f"cold start (new process → first GLB, weights cached): {r.cold_start_s:.1f} s ({parts})")
        if r.cold_start_first_run_extra_s is not None:
            lines.append(f"  its stages {r.cold_start_first_run_extra_s:+.2f} s over warm (what the on-disk caches leave"
                         + (": a second process, compiling from Inductor's cache)" if r.settings.get("compile") else ")"))
    if r.batch:
        b = r.batch
        lines.append(
            f"batch of {int(b['images'])}: {b['overlapped_images_per_min']:.1f} images/min overlapped, "
            f"{b['sequential_images_per_min']:.1f} sequential"
        )
    for m in r.server or []:
        lines.append(
            f"imesh serve, {m['workers']} worker{'s' * (m['workers'] > 1)}: ready in {m['ready_s']:.1f} s; one "
            f"`imesh generate` through it {m['call_s']:.3f} s ({m['call_s'] - r.total_s:+.3f} s over in-process warm: "
            f"job {m['job_s']:.3f} s on the server, client process {m['call_s'] - m['job_s']:.3f} s); "
            f"batch of {m['images']}: {m['images_per_min']:.1f} images/min"
        )
        if m.get("job_stages"):
            lines.append("  job stages: " + ", ".join(f"{k} {v:.3f}" for k, v in m["job_stages"].items()))
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)
