"""The Python API: photo → textured mesh, models loaded once per :class:`ImeshPipeline`.

::

    from instantmesh_cli import ImeshPipeline, PipelineOptions

    pipe = ImeshPipeline(PipelineOptions(seed=7))
    result = pipe.run("photo.png")      # a path, bytes, or a PIL image
    result.save("photo.glb")            # .glb / .obj / .ply; returns every file written
    result.views.save("views.png")      # the six views as a 3×2 grid

It schedules the one chain (``chain/stages.py``) like every other driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from instantmesh_cli.chain.job import Job, JobInput, ProgressFn, derive_seed
from instantmesh_cli.chain.models import Models
from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.chain.run import run_job
from instantmesh_cli.chain.stages import PHOTO_TO_MESH, provenance
from instantmesh_cli.errors import ImeshError
from instantmesh_cli.timing import StageTimer

if TYPE_CHECKING:
    from PIL import Image

    from instantmesh_cli.mesh import Mesh

__all__ = ["GenerateResult", "ImeshPipeline", "PipelineOptions"]


@dataclass
class GenerateResult:
    """What one image produced: the mesh (model frame), the cut-out, the views, and what it cost."""

    job: Job
    provenance: dict

    name = property(lambda self: self.job.name)
    seed = property(lambda self: self.job.seed)
    timings = property(lambda self: self.job.timings)
    warnings = property(lambda self: self.job.warnings)
    psnr_before = property(lambda self: self.job.psnr_before)
    psnr_after = property(lambda self: self.job.psnr_after)
    quality = property(lambda self: self.job.quality)  # PSNR and silhouette IoU against the views

    @property
    def mesh(self) -> "Mesh":
        return self.job.mesh

    @property
    def cutout(self) -> "Image.Image":
        return self.job.prepared.image

    @property
    def views(self) -> "Image.Image":
        return self.job.views

    @property
    def seconds(self) -> float:
        return self.job.seconds

    def save(self, path: str | os.PathLike[str], fmt: str | None = None) -> list[Path]:
        """Write the mesh (glTF frame, atomically) as GLB, OBJ (+ MTL + PNG) or PLY; every file written."""
        from instantmesh_cli.export import export_mesh

        return export_mesh(self.mesh, Path(path), fmt, provenance=self.provenance)


class ImeshPipeline:
    """Models loaded once (on the first :meth:`run`, or by :meth:`load`) and kept for every image."""

    def __init__(self, options: PipelineOptions = PipelineOptions(), *, progress: ProgressFn | None = None):
        self.models = Models(options)
        self.progress = progress
        self.timer = StageTimer(self.models.device)

    @property
    def options(self) -> PipelineOptions:
        return self.models.options

    @property
    def device(self):
        return self.models.device

    def load(self) -> float:
        """Load (and fetch if needed) every model now; the seconds it took (0.0 if already loaded)."""
        return self.models.load()

    def seed_for(self, name: str) -> int:
        return derive_seed(self.options.seed, name)

    def run(
        self, image: "Image.Image | bytes | str | os.PathLike[str]", name: str | None = None, *, seed: int | None = None
    ) -> GenerateResult:
        """One image → :class:`GenerateResult`; a bad input raises :class:`~instantmesh_cli.errors.ImeshError`."""
        if isinstance(image, (str, os.PathLike)):
            name = name or str(image)
            source = JobInput(label=name, path=Path(image))
        elif isinstance(image, bytes):
            name = name or "image"
            source = JobInput(label=name, data=image)
        else:
            name = name or "image"
            source = JobInput(label=name, image=image)
        job = Job(name=name, inputs=[source], seed=self.seed_for(name) if seed is None else seed,
                  options=self.options, progress=self.progress)
        run_job(self.models, job, PHOTO_TO_MESH, self.timer)
        if job.status == "failed":
            if isinstance(job.exception, ImeshError):
                raise job.exception
            raise ImeshError(job.error or "failed") from job.exception
        return GenerateResult(job, provenance(job))
