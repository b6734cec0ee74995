"""The Ray actor: one ``Models`` per actor (per GPU), the one chain run on the rows it is given.

:class:`ChainActor` is the Ray analogue of a :class:`~instantmesh_cli.chain.workers.WorkerPool`
worker. Ray Data builds one per GPU (``num_gpus=1``; CPU actors where the cluster has none)
and calls it with batches of one row, several at a time (a threaded actor): like the
:class:`~instantmesh_cli.chain.run.BatchRunner`, the CPU ``front`` of one image overlaps the
``gpu`` group of another and the ``back`` (texture, export) of a third, one job per group at
a time. The actor reads its inputs itself (a path on storage every node sees, or a URI),
writes its outputs itself (local: ``atomic_path``; a URI: a local copy published with a
temporary key and a move) and answers with the detached job, which is what the driver reports.

This module imports Ray only inside the actor; :func:`job_for` is shared with the driver.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from instantmesh_cli.cluster import storage

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions

# Rows are plain dicts so that Ray Data can carry them as Arrow columns:
#   index        the input's position on the command line (the driver reports by it)
#   name         the input as the user named it (JSON "input"; the seed derives from its file name)
#   source       where the actor reads it: an absolute local path or a URI
#   target       where the mesh goes: an absolute local path or a URI
#   shown        the mesh target as the user named it (JSON "output")
#   seed, fmt, save_views, save_cutout


def job_for(row: dict, options: "PipelineOptions", written: Path) -> "Job":
    """The row's :class:`Job`, writing its mesh to ``written`` and reporting it as ``row["shown"]``."""
    from instantmesh_cli.chain.job import Job, JobInput, JobOutputs

    shown = str(row["shown"])
    tail = written.name
    parent = str(written.parent)
    prefix = "" if parent == "." else parent.rstrip("/") + "/"
    shown_as = (prefix, shown[: len(shown) - len(tail)]) if shown.endswith(tail) else None
    out = JobOutputs(
        mesh=written,
        mesh_format=str(row["fmt"]),
        views=written.with_name(f"{written.stem}_views.png") if row["save_views"] else None,
        cutout=written.with_name(f"{written.stem}_cutout.png") if row["save_cutout"] else None,
        shown_as=shown_as,
    )
    source = str(row["source"])
    local = storage.local_path(source) if storage.scheme(source) is None else None
    inputs = [JobInput(label=str(row["name"]), path=local)] if local is not None else []
    return Job(name=str(row["name"]), inputs=inputs, seed=int(row["seed"]), options=options, outputs=out)


class ChainActor:
    """Loads its models at start (so the pool is warm before the first row) and runs rows."""

    def __init__(self, options: "PipelineOptions", plan: str = "PHOTO_TO_MESH"):
        import ray

        from instantmesh_cli.chain import stages
        from instantmesh_cli.chain.models import Models
        from instantmesh_cli.chain.run import split_groups
        from instantmesh_cli.timing import StageTimer

        self.node = ray.get_runtime_context().get_node_id()
        self.options = options
        self.plan = getattr(stages, plan)
        self.front, self.gpu, self.back = split_groups(self.plan)
        # One job per group at a time: the GPU holds one job's tensors, the back group one mesh.
        self.locks = {"front": threading.Lock(), "gpu": threading.Lock(), "back": threading.Lock()}
        self.broken: str | None = None
        try:
            self.models = Models(options)
            for stage in self.plan:
                if stage.name == "load":
                    stage.run(self.models, None)
        except Exception as exc:  # noqa: BLE001 - reported to the driver as one line, which stops the run
            self.broken = stages.describe(exc)
            self.models = None
        self.timer = StageTimer(self.models.device if self.models is not None else None)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows = [{k: batch[k][i] for k in batch} for i in range(len(batch["index"]))]
        blobs = [pickle.dumps(self._run(row).detached()) for row in rows]
        return {
            "index": np.array([int(r["index"]) for r in rows], dtype=np.int64),
            "job": np.array(blobs, dtype=object),
            "node": np.array([self.node] * len(rows), dtype=object),
            "broken": np.array([self.broken or ""] * len(rows), dtype=object),
        }

    def _run(self, row: dict) -> "Job":
        from instantmesh_cli.chain.run import run_stages

        target = str(row["target"])
        remote = storage.is_remote(target)
        staging = tempfile.mkdtemp(prefix="imesh-out-") if remote else None
        written = Path(staging) / PurePosixPath(target).name if remote else Path(target)
        job = job_for(row, self.options, written)
        try:
            if self.broken is not None:
                job.status, job.error = "failed", f"could not load the models: {self.broken}"
                return job
            with self.locks["front"]:
                self._read_remote(row, job)
                run_stages(self.models, job, self.front, self.timer)
            with self.locks["gpu"]:
                run_stages(self.models, job, self.gpu, self.timer)
            with self.locks["back"]:
                run_stages(self.models, job, self.back, self.timer)
                if remote and job.status == "pending":
                    self._publish(job)
            return job.settle()
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _read_remote(self, row: dict, job: "Job") -> None:
        """A URI input's bytes, fetched here (not through the driver); its failure fails the job."""
        from instantmesh_cli.chain.job import JobInput
        from instantmesh_cli.errors import ImeshError

        if job.inputs:
            return
        try:
            with self.timer("read", job.timings):
                job.inputs = [JobInput(label=job.name, data=storage.read_bytes(str(row["source"]), job.name))]
        except ImeshError as exc:
            job.status, job.error, job.exception = "failed", str(exc), exc

    def _publish(self, job: "Job") -> None:
        """Upload what the export stage wrote; side files first, so a mesh that exists is complete."""
        from instantmesh_cli.errors import ImeshError

        try:
            with self.timer("upload", job.timings):
                for path in reversed(job.files):
                    storage.publish(path, job.outputs.shown(path))
        except ImeshError as exc:
            job.status, job.error, job.exception = "failed", str(exc), exc
