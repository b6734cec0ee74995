"""The per-image job value that flows through the stages, and the seed rule.

A :class:`Job` is created by a driver (a command, the batch runner, the Python API,
a server or GPU worker), filled stage by stage, and read back for reporting. Stages
read the fields earlier stages wrote and write their own; nothing else is shared.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from instantmesh_cli.chain.options import PipelineOptions

if TYPE_CHECKING:
    from concurrent.futures import Future

    import torch
    from PIL import Image

    from instantmesh_cli.images import PreparedImage
    from instantmesh_cli.mesh import Mesh
    from instantmesh_cli.reconstruction.stage import Reconstruction
    from instantmesh_cli.texture.stage import TextureReport

# (stage name, units done, units total or None) — called from whichever thread runs the stage; must be cheap.
ProgressFn = Callable[[str, int, "int | None"], None]
Status = Literal["pending", "ok", "suspect", "failed", "skipped"]  # suspect: written, below --min-psnr/--min-iou


def derive_seed(seed: int, name: str) -> int:
    """A per-image seed from the run's seed and the image's file name (stable across runs and machines).

    The file name alone (not the folder) decides, so the same photo gets the same seed
    wherever it lies and whichever command (generate, multiview) runs it.
    """
    digest = hashlib.sha256(f"{seed}:{Path(name).name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class JobInput:
    """One input image: a file, bytes (stdin, an upload), or an already decoded image."""

    label: str  # shown in messages: the path as given, "stdin", an upload's name
    path: Path | None = None
    data: bytes | None = None
    image: "Image.Image | None" = None


@dataclass(frozen=True)
class JobOutputs:
    """What the export stage writes. Nothing set: the results stay in memory (the Python API)."""

    mesh: Path | None = None
    mesh_format: str = "glb"
    mesh_to: Callable[[bytes], None] | None = None  # GLB bytes to a stream (``-o -``)
    views: Path | None = None  # the 3×2 grid PNG
    view_tiles: bool = False  # also the six tiles beside the grid
    cutout: Path | None = None  # the RGBA cut-out PNG
    cutout_to: Callable[[bytes], None] | None = None  # cut-out PNG bytes to a stream
    cutout_size: int | None = None  # resize the written cut-out to this side (None: as prepared)
    # Records name files as the user did. A driver whose files are written under other names
    # (an absolute path on a Ray node, a local copy uploaded to an object store) gives the
    # written folder prefix and the prefix the user's name has in its place.
    shown_as: tuple[str, str] | None = None

    def shown(self, path: "Path | str") -> str:
        """``path`` (written by the export stage) as the user named it."""
        text = str(path)
        if self.shown_as is not None and text.startswith(self.shown_as[0]):
            return self.shown_as[1] + text[len(self.shown_as[0]):]
        return text


@dataclass
class Job:
    """One image through the chain: what goes in, what each stage made, what it cost."""

    name: str  # the input as the user named it; also what the seed is derived from
    inputs: list[JobInput]  # one photo; or 1 grid / 4 / 6 view images for `imesh reconstruct`
    seed: int
    options: PipelineOptions = field(default_factory=PipelineOptions)  # checked by the driver
    outputs: JobOutputs = field(default_factory=JobOutputs)
    progress: ProgressFn | None = None
    # filled by the stages, in order
    images: list["Image.Image"] = field(default_factory=list)  # read
    prepared: "PreparedImage | None" = None  # prepare
    views: "Image.Image | None" = None  # multiview: the 3×2 grid
    view_images: "list[Image.Image] | None" = None  # the views the model gets, in camera order (on white)
    view_tensor: "torch.Tensor | None" = None  # reconstruct: (1, V, 3, S, S) model input
    reconstruction: "Reconstruction | None" = None  # reconstruct
    mesh: "Mesh | None" = None  # reconstruct, then texture
    texture_report: "TextureReport | None" = None  # texture
    texture_png: "Future[bytes] | None" = None  # texture: its texture's PNG, encoded beside the quality check
    files: list[Path] = field(default_factory=list)  # export
    # what the job reports once its heavy values are gone (see detached)
    vertices: int | None = None
    faces: int | None = None
    psnr_before: float | None = None
    psnr_after: float | None = None
    quality: dict | None = None  # quality stage: psnr, iou, per view, suspect
    # bookkeeping
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    status: Status = "pending"
    error: str | None = None  # one line, for the user
    exception: BaseException | None = field(default=None, repr=False)  # the cause, for --debug and the API

    def report(self, stage: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def warn(self, message: str) -> None:
        """A result the user should look at (e.g. a fallback shape); reported with the job, which still succeeds."""
        self.warnings.append(message)

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())

    def error_line(self) -> str:
        """The failure as one line that names the input (image errors name it already)."""
        error = self.error or "failed"
        return error if self.name in error else f"{self.name}: {error}"

    def record(self) -> dict:
        """The job as one JSON object (``--json`` lines, the server's job status): the same keys for every job."""
        out = self.outputs
        if out.mesh is not None:
            output = out.shown(out.mesh)
        else:
            output = "-" if out.mesh_to is not None and self.status == "ok" else None
        return {
            "input": self.name,
            "output": output,
            "status": self.status,
            "error": self.error,
            "warnings": list(self.warnings),
            "seed": self.seed,
            "seconds": {k: round(v, 4) for k, v in self.timings.items()},
            "total_seconds": round(self.seconds, 4),
            "vertices": self.vertices,
            "faces": self.faces,
            "psnr_before": None if self.psnr_before is None else round(self.psnr_before, 3),
            "psnr_after": None if self.psnr_after is None else round(self.psnr_after, 3),
            "quality": self.quality,
            "files": [out.shown(p) for p in self.files],
        }

    def settle(self) -> "Job":
        """Mark a job that ran every stage without failing as ok, and note the numbers it reports."""
        if self.status == "pending":
            self.status = "suspect" if self.quality and self.quality.get("suspect") else "ok"
        if self.status in ("ok", "suspect") and self.mesh is not None:
            self.vertices, self.faces = self.mesh.num_vertices, self.mesh.num_faces
        if self.texture_report is not None:
            self.psnr_before, self.psnr_after = self.texture_report.psnr_before, self.texture_report.psnr_after
        return self

    def detached(self, *, keep_inputs: bool = False) -> "Job":
        """A light copy to send between processes: what it reports, without images, tensors, meshes,
        callbacks or the exception object (its one-line error stays). ``keep_inputs`` keeps the
        input bytes (a job on its way to a worker); otherwise only labels and paths travel back."""
        light_inputs = list(self.inputs) if keep_inputs else [JobInput(label=i.label, path=i.path) for i in self.inputs]
        return dataclasses.replace(
            self, inputs=light_inputs, outputs=dataclasses.replace(self.outputs, mesh_to=None, cutout_to=None),
            progress=None, images=[], prepared=None, views=None, view_images=None, view_tensor=None,
            reconstruction=None, mesh=None, texture_report=None, texture_png=None, exception=None,
            files=list(self.files), timings=dict(self.timings), warnings=list(self.warnings),
        )
