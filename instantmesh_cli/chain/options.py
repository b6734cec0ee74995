"""Every setting of a run, checked once.

:class:`PipelineOptions` is what the Python API takes and what each command maps its
flags onto; :meth:`PipelineOptions.check` is the one place where values are validated
(usage errors, exit 2), before any model is loaded. This module imports nothing heavy:
``imesh --help`` and the option checks stay fast.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from instantmesh_cli import settings
from instantmesh_cli.errors import ImeshError, UsageError

# Names the CLI offers as choices; the libraries that implement them are checked
# against these in tests/test_cli.py (importing them here would load torch at start-up).
SCHEDULERS = ("euler-a", "dpm++2m", "unipc")
UV_METHODS = ("box", "xatlas")
MESH_FORMATS = ("glb", "obj", "ply")
DTYPES = ("auto", "fp32", "fp16", "bf16")
VIEW_COUNTS = (4, 6)

TEXTURE_SIZE_RANGE = (64, 8192)
STEPS_RANGE = (1, 1000)
GUIDANCE_RANGE = (0.0, 100.0)
MIN_TARGET_FACES = 100


@dataclass(frozen=True)
class PipelineOptions:
    """One run's settings; defaults are the paper settings (75 euler-a steps, 6 views, 1024² texture)."""

    # reconstruction model
    model: str = settings.DEFAULT_VARIANT
    views: int = 6
    scale: float = 1.0  # camera distance factor; < 1 shrinks objects that come out cropped
    clean: bool = True  # drop floating pieces after extraction
    # sampling
    seed: int = settings.DEFAULT_SEED
    steps: int | None = None  # None: the scheduler's default (75 for euler-a)
    guidance: float = settings.DEFAULT_GUIDANCE
    scheduler: str = "euler-a"
    # background removal
    remove_background: bool | None = None  # None: automatic (keep real alpha)
    matting_model: str = settings.DEFAULT_MATTING_MODEL
    foreground_ratio: float = settings.DEFAULT_FOREGROUND_RATIO
    # texture
    texture: bool = True  # False: vertex colours
    texture_size: int = settings.DEFAULT_TEXTURE_SIZE
    refine_texture: bool = True
    refine_steps: int = settings.DEFAULT_REFINE_STEPS
    target_faces: int | None = None  # None: the texture stage's default budget; 0 keeps every face
    uv_method: str | None = None  # None: the texture stage's default
    # quality signal and previews
    quality: bool = True  # compare the mesh as exported with its six views (PSNR, silhouette IoU)
    min_psnr: float | None = None  # below: the output is marked "suspect"
    min_iou: float | None = None
    preview: bool = False  # a PNG sheet of the exported mesh beside it
    # surface work before texturing (the optional `meshlab` extra)
    remesh: bool = False  # isotropic remeshing: even triangles, about target_faces of them
    watertight: bool = False  # repair into a closed, outward surface (3D printing)
    # performance
    device: str = "auto"
    dtype: str = "auto"
    low_vram: bool = False
    compile: bool = False
    # weights
    offline: bool | None = None  # None: HF_HUB_OFFLINE decides
    weights_dir: Path | None = None
    # The official behaviour (the weight head on every FlexiCubes cube); only the benchmark baseline turns it off.
    surface_only: bool = True

    def check(self) -> "PipelineOptions":
        """Raise one :class:`UsageError` naming the first bad value; return self for chaining."""
        settings.get_variant(self.model)
        if self.views not in VIEW_COUNTS:
            raise UsageError(f"--views must be 4 or 6, got {self.views}")
        if not self.scale > 0:
            raise UsageError(f"--scale must be positive, got {self.scale}")
        if self.scheduler not in SCHEDULERS:
            raise UsageError(f"unknown --scheduler {self.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}")
        if self.steps is not None and not STEPS_RANGE[0] <= self.steps <= STEPS_RANGE[1]:
            raise UsageError(f"--steps must be between {STEPS_RANGE[0]} and {STEPS_RANGE[1]}, got {self.steps}")
        if not GUIDANCE_RANGE[0] <= self.guidance <= GUIDANCE_RANGE[1]:
            raise UsageError(f"--guidance must be between {GUIDANCE_RANGE[0]:g} and {GUIDANCE_RANGE[1]:g}, got {self.guidance}")
        if not 0.0 < self.foreground_ratio <= 1.0:
            raise UsageError(f"--foreground-ratio must be in (0, 1], got {self.foreground_ratio}")
        low, high = TEXTURE_SIZE_RANGE
        if not low <= self.texture_size <= high:
            raise UsageError(f"--texture-size must be between {low} and {high}, got {self.texture_size}")
        if self.refine_steps < 0:
            raise UsageError(f"--refine-steps must be 0 or more, got {self.refine_steps}")
        if self.target_faces is not None and self.target_faces != 0 and self.target_faces < MIN_TARGET_FACES:
            raise UsageError(f"--target-faces must be 0 (keep all) or at least {MIN_TARGET_FACES}, got {self.target_faces}")
        if self.uv_method is not None and self.uv_method not in UV_METHODS:
            raise UsageError(f"unknown --uv {self.uv_method!r}; choose one of: {', '.join(UV_METHODS)}")
        if self.min_iou is not None and not 0.0 <= self.min_iou <= 1.0:
            raise UsageError(f"--min-iou must be between 0 and 1, got {self.min_iou}")
        if self.min_psnr is not None and not self.min_psnr > 0:
            raise UsageError(f"--min-psnr must be positive, got {self.min_psnr}")
        if (self.min_iou is not None or self.min_psnr is not None) and not self.quality:
            raise UsageError("--min-psnr / --min-iou need the quality check; drop --no-quality")
        if self.compile and self.low_vram:
            raise UsageError("--compile cannot be combined with --low-vram (the compiled passes use the UNet's "
                             "weights where they are)")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown --dtype {self.dtype!r}; choose one of: {', '.join(DTYPES)}")
        if (self.remesh or self.watertight) and importlib.util.find_spec("pymeshlab") is None:
            from instantmesh_cli.mesh import MESHLAB_INSTALL

            flag = "--remesh" if self.remesh else "--watertight"
            # Not a usage error: the command line is right, this install lacks the extra.
            raise ImeshError(f"{flag} needs pymeshlab, which is not installed", hint=MESHLAB_INSTALL)
        return self

    @property
    def runs_mesh_stage(self) -> bool:
        return self.remesh or self.watertight

    @property
    def runs_texture_stage(self) -> bool:
        """A texture is baked, or vertex colours are refined on the views first (``--no-texture``)."""
        return self.texture or (self.refine_texture and self.refine_steps > 0)

    def replace(self, **changes) -> "PipelineOptions":
        return dataclasses.replace(self, **changes)

    def provenance(self) -> dict:
        """What shaped an output, recorded in it (GLB extras): no paths, nothing time-dependent."""
        keys = ("model", "views", "scale", "steps", "guidance", "scheduler", "foreground_ratio", "texture",
                "texture_size", "refine_texture", "refine_steps", "target_faces", "uv_method", "remesh", "watertight",
                "dtype", "min_psnr", "min_iou")
        return {k: getattr(self, k) for k in keys}
