"""``imesh selftest``: does this install work? The whole chain, in seconds, before a 6 GB download.

The bundled photo (``assets/example.png``) goes through every stage of ``imesh generate``
— read, prepare, load, multiview, reconstruct, texture, export — on tiny random weights
written in the released layouts into a ``--weights-dir`` folder with its manifest
(:func:`~instantmesh_cli.random_weights.write_tiny_weights`), loaded offline through the
same hub and loading code as the real weights. The GLB it writes is then read back.
Nothing is downloaded; nothing outside a temporary folder is written, unless
``save_weights`` keeps the tiny set as an ordinary weights folder.

Background removal: the tiny set has no matting model. When a rembg model is already on
this machine, the photo is composited on white and matted for real; otherwise its own
alpha is used and matting is skipped (as ``imesh generate`` does for any such photo).
The report says which.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from instantmesh_cli import settings
from instantmesh_cli.errors import UsageError

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job, ProgressFn

# Small enough for a CPU, large enough that every stage does its real work.
STEPS = 1
TEXTURE_SIZE = 64
REFINE_STEPS = 2
TARGET_FACES = 2000
SELFTEST_NOTE = "tiny random weights for imesh selftest; not a model"


@dataclass
class StageResult:
    name: str
    status: str  # "ok" | "failed" | "skipped" (an optional extra is not installed) | "not run"
    seconds: float | None = None
    detail: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status,
                "seconds": None if self.seconds is None else round(self.seconds, 3), "detail": self.detail}


@dataclass
class SelftestReport:
    device: str = ""
    background_removal: str = ""
    weights_dir: Path | None = None  # the kept tiny set (``save_weights``), else None
    stages: list[StageResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(s.status in ("ok", "skipped") for s in self.stages)

    @property
    def seconds(self) -> float:
        return sum(s.seconds or 0.0 for s in self.stages)

    @property
    def failure(self) -> StageResult | None:
        return next((s for s in self.stages if s.status == "failed"), None)

    def to_json(self) -> dict:
        return {
            "ok": self.ok, "device": self.device, "seconds": round(self.seconds, 3),
            "background_removal": self.background_removal,
            "weights_dir": None if self.weights_dir is None else str(self.weights_dir),
            "stages": [s.to_json() for s in self.stages],
        }


def check_weights_target(folder: Path) -> None:
    """Refuse a ``--save-weights`` folder that holds anything but an earlier tiny set: the
    tiny files would overwrite real weights of the same names."""
    from instantmesh_cli.random_weights import MARKER

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--save-weights {folder}: it is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        marker = folder / MARKER
        if not (marker.is_file() and SELFTEST_NOTE in marker.read_text(errors="replace")):
            raise UsageError(f"--save-weights {folder}: the folder is not empty; give a new or empty folder "
                             "(the tiny weights would overwrite files of the same names)")


@contextlib.contextmanager
def _own_cache(folder: Path) -> Iterator[None]:
    # Converted checkpoints and verification stamps of throw-away weights stay out of the user's cache.
    old = os.environ.get("IMESH_CACHE_DIR")
    os.environ["IMESH_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("IMESH_CACHE_DIR", None)
        else:
            os.environ["IMESH_CACHE_DIR"] = old


def run_selftest(
    *,
    device: str = "auto",
    save_weights: Path | None = None,
    variant: str = settings.DEFAULT_VARIANT,
    progress: "ProgressFn | None" = None,
) -> SelftestReport:
    """Run the chain on the bundled photo with tiny weights; every stage's outcome and time."""
    from instantmesh_cli.chain.stages import PHOTO_TO_MESH

    if save_weights is not None:
        check_weights_target(save_weights)
    report = SelftestReport()
    with tempfile.TemporaryDirectory(prefix="imesh-selftest-") as tmp, _own_cache(Path(tmp) / "cache"):
        weights = Path(save_weights) if save_weights is not None else Path(tmp) / "weights"
        written = _write_weights(weights, variant, report, progress)
        if written:
            report.weights_dir = Path(save_weights).resolve() if save_weights is not None else None
            job = _run_chain(weights, variant, device, Path(tmp) / "selftest.glb", report, progress)
            if job is not None and job.status == "ok":
                _check_output(job, report, progress)
        else:
            report.stages += [StageResult(s.name, "not run") for s in PHOTO_TO_MESH] + [StageResult("check", "not run")]
    return report


def _write_weights(folder: Path, variant: str, report: SelftestReport, progress) -> bool:
    from instantmesh_cli.chain.stages import describe
    from instantmesh_cli.random_weights import write_tiny_weights

    if progress is not None:
        progress("weights", 0, None)
    start = time.perf_counter()
    try:
        write_tiny_weights(folder, variant)
    except Exception as exc:  # noqa: BLE001 - reported as the stage's failure
        report.stages.append(StageResult("weights", "failed", time.perf_counter() - start, describe(exc)))
        return False
    files = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    report.stages.append(StageResult(
        "weights", "ok", time.perf_counter() - start,
        f"tiny {variant} set in the released layouts: {len(files)} files, {size / 1e6:.1f} MB"))
    return True


def _job_input(weights: Path | None = None):
    """The bundled photo: on white (so rembg has work) when a matting model is here, else with its alpha."""
    from PIL import Image

    from instantmesh_cli.chain.job import JobInput
    from instantmesh_cli.examples import example_photo
    from instantmesh_cli.images import composite_on, find_matting_model, rembg_home

    photo = example_photo()
    model = settings.DEFAULT_MATTING_MODEL
    found = find_matting_model(model, weights_dir=weights)  # where the run's remover will look
    if found is not None:
        with Image.open(photo) as img:
            on_white = composite_on(img.convert("RGBA"))
        return JobInput(label=f"{photo.name} on white", image=on_white), f"rembg {model} ({found})"
    how = f"skipped: the photo has real alpha and there is no rembg model in {rembg_home()}"
    return JobInput(label=photo.name, path=photo), how


def _run_chain(weights: Path, variant: str, device: str, target: Path, report: SelftestReport, progress) -> "Job | None":
    from instantmesh_cli.chain.job import Job, JobOutputs, derive_seed
    from instantmesh_cli.chain.models import Models
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.chain.run import run_job
    from instantmesh_cli.chain.stages import PHOTO_TO_MESH, describe
    from instantmesh_cli.device import device_name

    from instantmesh_cli.mesh import meshlab_available

    source, report.background_removal = _job_input(weights)
    meshlab = meshlab_available()  # the optional extra: its stage runs when it is installed
    options = PipelineOptions(
        model=variant, steps=STEPS, texture_size=TEXTURE_SIZE, refine_steps=REFINE_STEPS, target_faces=TARGET_FACES,
        remesh=meshlab, watertight=meshlab, device=device, offline=True, weights_dir=weights,
    )
    names = [s.name for s in PHOTO_TO_MESH]
    try:
        options.check()
        models = Models(options)
        report.device = f"{device_name(models.device)} ({models.device.type}, {str(models.dtype).removeprefix('torch.')})"
    except Exception as exc:  # noqa: BLE001 - a bad device is this install's answer too
        report.stages += [StageResult(n, "failed" if n == "load" else "not run", None, describe(exc) if n == "load" else "")
                          for n in names + ["check"]]
        return None
    current: list[str] = []

    def track(stage: str, done: int, total: int | None) -> None:
        if stage in names and (not current or current[-1] != stage):
            current.append(stage)
        if progress is not None:
            progress(stage, done, total)

    job = Job(name=source.label, inputs=[source], seed=derive_seed(settings.DEFAULT_SEED, source.label),
              options=options, outputs=JobOutputs(mesh=target, mesh_format="glb"), progress=track)
    run_job(models, job, PHOTO_TO_MESH)
    failed_at = current[-1] if job.status == "failed" and current else None
    for name in names:
        if failed_at is not None and names.index(name) > names.index(failed_at):
            report.stages.append(StageResult(name, "not run"))
        elif name == failed_at:
            report.stages.append(StageResult(name, "failed", job.timings.get(name), job.error or "failed"))
        elif name == "mesh" and not options.runs_mesh_stage:
            from instantmesh_cli.mesh import MESHLAB_INSTALL

            report.stages.append(StageResult(name, "skipped", None, f"--remesh and --watertight need the meshlab extra ({MESHLAB_INSTALL})"))
        else:
            report.stages.append(StageResult(name, "ok", job.timings.get(name, 0.0), _detail(name, job)))
    if job.status != "ok":
        report.stages.append(StageResult("check", "not run"))
    return job


def _detail(stage: str, job: "Job") -> str:
    o = job.options
    if stage == "read" and job.images:
        image = job.images[0]
        return f"{job.name}: {image.size[0]}×{image.size[1]} {image.mode}"
    if stage == "prepare" and job.prepared is not None:
        return f"background removed ({job.prepared.matting_model})" if job.prepared.background_removed else \
            "background removal skipped (real alpha)"
    if stage == "load":
        return f"Zero123++ and {o.model} from the tiny set, offline"
    if stage == "multiview" and job.views is not None:
        return f"{o.steps} {o.scheduler} step{'' if o.steps == 1 else 's'} → {job.views.size[0]}×{job.views.size[1]} grid of six views"
    if stage == "reconstruct" and job.reconstruction is not None:
        mesh = job.reconstruction.mesh
        return f"{mesh.num_faces} faces, {mesh.num_vertices} vertices"
    if stage == "mesh" and job.mesh is not None:
        closed = job.mesh.metadata.get("watertight", {}).get("closed")
        remeshed = job.mesh.metadata.get("remesh", {}).get("faces_after")
        return f"remeshed ({remeshed} faces), repaired: {job.mesh.num_faces} faces, " + ("closed" if closed else "NOT closed")
    if stage == "texture" and job.texture_report is not None:
        r = job.texture_report
        return f"{r.refine_steps} refinement steps, {r.uv_method} UVs, {r.texture_size}² bake ({r.rasterizer} rasterizer)"
    if stage == "export" and job.files:
        return f"{job.files[0].name}, {job.files[0].stat().st_size / 1e3:.0f} KB"
    return ""


def _check_output(job: "Job", report: SelftestReport, progress) -> None:
    """Read the GLB back as any other tool would (trimesh) and compare it with the mesh it was made from."""
    if progress is not None:
        progress("check", 0, None)
    start = time.perf_counter()
    try:
        import trimesh

        scene = trimesh.load(job.files[0], file_type="glb")
        geometry = scene.to_geometry() if hasattr(scene, "to_geometry") else scene.dump(concatenate=True)
        faces = len(geometry.faces)
        if faces != job.mesh.num_faces:
            raise ValueError(f"the GLB holds {faces} faces, the mesh had {job.mesh.num_faces}")
        textured = getattr(getattr(geometry.visual, "material", None), "baseColorTexture", None) is not None
        if not textured:
            raise ValueError("the GLB has no base-colour texture")
    except Exception as exc:  # noqa: BLE001 - reported as the stage's failure
        report.stages.append(StageResult("check", "failed", time.perf_counter() - start, f"{type(exc).__name__}: {exc}"))
        return
    report.stages.append(StageResult("check", "ok", time.perf_counter() - start,
                                     f"the GLB loads back (trimesh): {faces} faces, textured"))
