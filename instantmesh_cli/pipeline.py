"""The whole chain: photo → cut-out → six views → triplane + mesh → texture → export.

:class:`ImeshPipeline` loads each model once (lazily, on first use) and keeps it for
every image of a batch. Each stage takes and returns plain typed values; per-stage
seconds are measured with the device synchronised, so they add up to the wall time.

Usable from Python::

    from instantmesh_cli import ImeshPipeline, PipelineOptions
    pipe = ImeshPipeline(PipelineOptions(steps=75))
    result = pipe.run(Image.open("photo.png"), name="photo.png")
    result.mesh  # a Mesh in the model frame; export with instantmesh_cli.export.export_mesh
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from instantmesh_cli import settings
from instantmesh_cli.batch import derive_seed

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from instantmesh_cli.images import PreparedImage
    from instantmesh_cli.mesh import Mesh

# (stage name, done, total) — called from the worker thread; must be cheap.
ProgressFn = Callable[[str, int, "int | None"], None]

STAGES = ("prepare", "multiview", "reconstruct", "texture", "export")


@dataclass(frozen=True)
class PipelineOptions:
    """Every setting of a run; the CLI options map one to one onto these fields."""

    model: str = settings.DEFAULT_VARIANT
    steps: int | None = None  # None: the scheduler's default (75 for euler-a)
    guidance: float = settings.DEFAULT_GUIDANCE
    seed: int = settings.DEFAULT_SEED
    scheduler: str = "euler-a"
    views: int = 6
    scale: float = 1.0
    remove_background: bool | None = None  # None: automatic (keep real alpha)
    matting_model: str | None = None  # None: images.DEFAULT_MATTING_MODEL
    foreground_ratio: float = settings.DEFAULT_FOREGROUND_RATIO
    texture: bool = True
    texture_size: int = settings.DEFAULT_TEXTURE_SIZE
    refine_texture: bool = True
    refine_steps: int = settings.DEFAULT_REFINE_STEPS
    target_faces: int | None = None  # None: the texture stage's default budget
    uv_method: str | None = None  # None: the texture stage's default
    device: str = "auto"
    dtype: str = "auto"
    low_vram: bool = False
    offline: bool | None = None
    weights_dir: Path | None = None
    compile: bool = False
    surface_only: bool = True  # False: every FlexiCubes cube evaluated (the official way; benchmark baseline)


@dataclass
class GenerateResult:
    """What one image produced, with everything ``--json`` reports."""

    name: str
    seed: int
    mesh: "Mesh"
    cutout: "Image.Image"
    views: "Image.Image"  # the 3x2 grid
    timings: dict[str, float] = field(default_factory=dict)
    psnr_before: float | None = None
    psnr_after: float | None = None

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())


class ImeshPipeline:
    """Models loaded once per process; :meth:`run` turns one image into a mesh."""

    def __init__(self, options: PipelineOptions = PipelineOptions(), *, progress: ProgressFn | None = None):
        from instantmesh_cli.reconstruction.stage import resolve_device, resolve_dtype

        settings.get_variant(options.model)  # fail early on a bad name
        if options.views not in (4, 6):
            from instantmesh_cli.errors import UsageError

            raise UsageError(f"--views must be 4 or 6, got {options.views}")
        self.options = options
        self.progress = progress
        self.device = resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device)
        self._remover = None
        self._multiview = None
        self._reconstructor = None

    # ------------------------------------------------------------------ models (lazy, once)
    def _report(self, stage: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    @property
    def remover(self):
        if self._remover is None:
            from instantmesh_cli.images import DEFAULT_MATTING_MODEL, BackgroundRemover

            self._remover = BackgroundRemover(self.options.matting_model or DEFAULT_MATTING_MODEL, offline=self.options.offline)
        return self._remover

    @property
    def multiview_pipeline(self):
        if self._multiview is None:
            from instantmesh_cli.multiview.loading import load_pipeline

            self._multiview = load_pipeline(
                device=self.device,
                dtype=self.dtype,
                low_vram=self.options.low_vram,
                offline=self.options.offline,
                weights_dir=self.options.weights_dir,
                progress=lambda done, total: self._report("download", done, total),
                compile=self.options.compile,
            )
        return self._multiview

    @property
    def reconstructor(self):
        if self._reconstructor is None:
            from instantmesh_cli.reconstruction.loading import load_model

            self._reconstructor = load_model(
                self.options.model,
                device=self.device,
                compute_dtype=self.dtype,
                offline=self.options.offline,
                weights_dir=self.options.weights_dir,
            )
        return self._reconstructor

    def load(self) -> bool:
        """Load (and fetch if needed) every model now rather than on the first image; True if anything was loaded."""
        loaded = self._multiview is None or self._reconstructor is None
        self.multiview_pipeline
        self.reconstructor
        return loaded

    # ------------------------------------------------------------------ stages
    @contextlib.contextmanager
    def _timed(self, timings: dict[str, float], stage: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def prepare(self, image: "Image.Image", name: str = "image") -> "PreparedImage":
        from instantmesh_cli.images import has_real_alpha, prepare_image

        o = self.options
        needs_matting = o.remove_background is True or (o.remove_background is None and not has_real_alpha(image))
        return prepare_image(
            image,
            remove_background=o.remove_background,
            remover=self.remover if needs_matting else None,
            foreground_ratio=o.foreground_ratio,
            name=name,
        )

    def generate_views(self, cutout: "Image.Image", seed: int) -> "Image.Image":
        o = self.options
        return self.multiview_pipeline(
            cutout,
            steps=o.steps,
            guidance=o.guidance,
            seed=seed,
            scheduler=o.scheduler,
            callback=lambda done, total: self._report("multiview", done, total),
        )

    def reconstruct(self, grid: "Image.Image"):
        """Grid → :class:`~instantmesh_cli.reconstruction.stage.Reconstruction` (planes + cleaned mesh)."""
        from instantmesh_cli.reconstruction.inputs import views_from_images, views_to_tensor
        from instantmesh_cli.reconstruction.stage import reconstruct

        model = self.reconstructor
        views = views_from_images([grid], ["views"], views=self.options.views)
        images = views_to_tensor(views, model.cfg.input_size)
        return reconstruct(model, images, scale=self.options.scale, surface_only=self.options.surface_only), images

    @property
    def runs_texture_stage(self) -> bool:
        """A texture is baked, or vertex colours are refined on the views first (``--no-texture``)."""
        o = self.options
        return o.texture or (o.refine_texture and o.refine_steps > 0)

    def texture(self, mesh: "Mesh", planes: "torch.Tensor", images: "torch.Tensor"):
        """Refine (optional), then bake a UV texture or (``texture=False``) vertex colours; returns (mesh, report)."""
        from instantmesh_cli.texture import texture_mesh

        o = self.options
        return texture_mesh(
            mesh,
            planes,
            self.reconstructor,
            images[0],
            views=o.views,
            scale=o.scale,
            refine_steps=o.refine_steps if o.refine_texture else 0,
            texture_size=o.texture_size,
            target_faces=o.target_faces,
            uv_method=o.uv_method,
            bake=o.texture,
        )

    # ------------------------------------------------------------------ the chain
    def seed_for(self, name: str) -> int:
        return derive_seed(self.options.seed, name)

    def run(self, image: "Image.Image", name: str = "image", *, seed: int | None = None) -> GenerateResult:
        """One image → :class:`GenerateResult` (mesh in the model frame; not yet written)."""
        seed = self.seed_for(name) if seed is None else seed
        timings: dict[str, float] = {}
        with self._timed(timings, "prepare"):
            prepared = self.prepare(image, name)
        # Loading is timed apart so that per-image stage times stay comparable in a batch.
        with self._timed(timings, "load"):
            loaded = self.load()
        if not loaded:  # models already resident: no load time to report
            timings.pop("load")
        with self._timed(timings, "multiview"):
            grid = self.generate_views(prepared.image, seed)
        with self._timed(timings, "reconstruct"):
            recon, images = self.reconstruct(grid)
        mesh = recon.mesh
        psnr_before = psnr_after = None
        if self.runs_texture_stage:
            with self._timed(timings, "texture"):
                mesh, report = self.texture(mesh, recon.planes, images)
            psnr_before, psnr_after = report.psnr_before, report.psnr_after
        return GenerateResult(name, seed, mesh, prepared.image, grid, timings, psnr_before, psnr_after)
