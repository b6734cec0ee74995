"""The server's job table: jobs submitted over HTTP, run by a :class:`WorkerPool`, kept until fetched or expired.

Each job gets a folder of its own under the server's private results folder; the workers
write its files there (atomically, as for any output) named after the client's ``stem``,
so an OBJ's ``mtllib`` and texture names are the ones the client will write. Nothing a
client sends becomes a path: the folder is the server's, the stem a checked file name.

Progress and completion arrive on the pool's collector thread; they are noted under a lock
and the event loop is told (``call_soon_threadsafe``), so streaming clients wake at once.
A job does not depend on its client: one that disappears leaves its results to the TTL.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from concurrent.futures import Future

    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.chain.workers import WorkerPool

FINISHED = ("done", "failed", "cancelled")
MAX_WAITING = 1000  # jobs queued before submissions are turned away (503)
_STEM = re.compile(r"^[^./\\\x00-\x1f][^/\\\x00-\x1f]{0,127}$")
MEDIA_TYPES = {".glb": "model/gltf-binary", ".obj": "model/obj", ".ply": "application/ply", ".mtl": "model/mtl",
               ".png": "image/png", ".zip": "application/zip"}


class JobError(Exception):
    """A request about a job that cannot be met, as one line and an HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def clean_name(name: str | None) -> str:
    """An upload's name as a label: its last path part, printable, bounded; never a path."""
    text = "".join(ch for ch in (name or "") if ch.isprintable())
    base = PurePosixPath(text.replace("\\", "/")).name[:200]
    return base if base not in ("", ".", "..") else "image"


def check_stem(stem: str) -> str:
    if not _STEM.match(stem) or stem.strip() != stem:
        raise JobError(f"stem {stem!r} must be a plain file name (no '/', not starting with '.', at most 128 characters)", 422)
    return stem


def default_stem(name: str) -> str:
    stem = PurePosixPath(name).stem
    return stem if _STEM.match(stem or "") else "mesh"


@dataclass
class ServerJob:
    id: str
    name: str
    stem: str
    fmt: str
    folder: Path
    mesh_path: Path
    views_path: Path
    cutout_path: Path
    preview_path: Path
    submitted: float = field(default_factory=time.monotonic)
    state: str = "queued"  # queued → running → done | failed; cancelled at any point
    stage: str | None = None
    step: int | None = None
    total: int | None = None
    started: float | None = None
    finished: float | None = None
    result: "Job | None" = None
    error: str | None = None
    future: "Future | None" = None
    version: int = 0
    event: asyncio.Event | None = None

    def files(self) -> list[dict]:
        """The job's files once done, mesh first: name, kind, size."""
        if self.state != "done" or self.result is None:
            return []
        kinds = {self.mesh_path: "mesh", self.views_path: "views", self.cutout_path: "cutout", self.preview_path: "preview"}
        out = []
        for path in self.result.files:
            if path.exists():
                out.append({"name": path.name, "kind": kinds.get(path, "mesh-part"), "bytes": path.stat().st_size})
        return out

    def path_of(self, name: str) -> Path:
        """The file ``name`` of this job: one of its own files, or a 404."""
        if self.state != "done":
            raise JobError(f"job {self.id} is {self.state}; its files are there once it is done", 409 if self.state != "failed" else 404)
        for entry in self.files():
            if entry["name"] == name:
                return self.folder / name
        raise JobError(f"job {self.id} has no file {name!r}", 404)

    def mesh_parts(self) -> list[Path]:
        return [self.folder / f["name"] for f in self.files() if f["kind"] in ("mesh", "mesh-part")]


class Stats:
    """count / total / max of a series of seconds (real measurements only; nothing when nothing ran)."""

    def __init__(self):
        self.series: dict[str, list[float]] = {}

    def add(self, key: str, seconds: float) -> None:
        entry = self.series.setdefault(key, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += seconds
        entry[2] = max(entry[2], seconds)

    def report(self) -> dict:
        return {k: {"count": n, "mean": round(t / n, 4), "max": round(m, 4), "total": round(t, 4)}
                for k, (n, t, m) in self.series.items()}


class JobTable:
    """Jobs by id over ``pool``; results under ``root`` for ``ttl`` seconds after they finish."""

    def __init__(self, pool: "WorkerPool", options: "PipelineOptions", root: Path, *, ttl: float,
                 loop: asyncio.AbstractEventLoop | None = None, log: Callable[[str], None] | None = None):
        self.pool = pool
        self.options = options
        self.root = Path(root)
        self.ttl = ttl
        self.loop = loop
        self.log = log
        self.started = time.monotonic()
        self._jobs: dict[str, ServerJob] = {}
        self._outstanding: set["Future"] = set()  # submitted to the pool, not yet back (cancelled ones too)
        self._lock = threading.RLock()
        self.stage_seconds = Stats()
        self.job_seconds = Stats()
        self.counts = {"submitted": 0, "done": 0, "failed": 0, "cancelled": 0, "expired": 0}

    # ------------------------------------------------------------------ notification
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def _changed(self, job: ServerJob) -> None:
        """Called with the lock held, from any thread: waiters on this job wake in the loop."""
        job.version += 1
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._wake, job)
            except RuntimeError:
                pass  # the loop stopped between the check and the call: nobody is waiting any more

    @staticmethod
    def _wake(job: ServerJob) -> None:
        if job.event is not None:
            event, job.event = job.event, None
            event.set()

    async def wait_change(self, job: ServerJob, version: int, timeout: float) -> None:
        """Return once ``job.version`` is past ``version``, or after ``timeout`` seconds."""
        if job.version != version:
            return
        if job.event is None:
            job.event = asyncio.Event()
        try:
            await asyncio.wait_for(job.event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    # ------------------------------------------------------------------ jobs
    def submit(self, data: bytes, name: str, stem: str, options: "PipelineOptions", fmt: str, *,
               keep_views: bool = True, keep_cutout: bool = True) -> ServerJob:
        from instantmesh_cli.chain.job import Job, JobInput, JobOutputs, derive_seed
        from instantmesh_cli.errors import ImeshError

        # Lock order: the pool's lock, then this table's (the pool calls back into the table
        # holding its own). So the pool is never called with this table's lock held.
        with self._lock:
            waiting = sum(j.state == "queued" for j in self._jobs.values())
            if waiting >= MAX_WAITING:
                raise JobError(f"the queue is full ({waiting} jobs waiting); try again later", 503)
            job_id = uuid.uuid4().hex
            folder = self.root / job_id
            folder.mkdir(mode=0o700)
            job = ServerJob(job_id, name, stem, fmt, folder, folder / f"{stem}.{fmt}", folder / f"{stem}_views.png",
                            folder / f"{stem}_cutout.png", folder / f"{stem}_preview.png")  # the preview stage's name
            self._jobs[job_id] = job
        work = Job(name=name, inputs=[JobInput(label=name, data=data)], seed=derive_seed(options.seed, name),
                   options=options, outputs=JobOutputs(mesh=job.mesh_path, mesh_format=fmt,
                                                       views=job.views_path if keep_views else None,
                                                       cutout=job.cutout_path if keep_cutout else None),
                   progress=lambda stage, done, total: self._progress(job, stage, done, total))
        try:
            future = self.pool.submit(work)
        except ImeshError as exc:
            with self._lock:
                self._jobs.pop(job_id, None)
            shutil.rmtree(folder, ignore_errors=True)
            raise JobError(str(exc), 503) from None
        with self._lock:
            job.future = future
            self._outstanding.add(future)
            self.counts["submitted"] += 1
        future.add_done_callback(lambda done: self._finished(job, done))
        return job

    def _progress(self, job: ServerJob, stage: str, done: int, total: int | None) -> None:
        with self._lock:
            if job.state == "queued":
                job.state, job.started = "running", time.monotonic()
                self.job_seconds.add("wait", job.started - job.submitted)
            if job.state != "running":
                return
            job.stage, job.step, job.total = stage, done, total
            self._changed(job)

    def _finished(self, job: ServerJob, future: "Future") -> None:
        with self._lock:
            self._outstanding.discard(future)
            job.finished = time.monotonic()
            if future.cancelled():
                result = None
            else:
                result = future.result()
                for stage, seconds in result.timings.items():
                    self.stage_seconds.add(stage, seconds)
                self.job_seconds.add("total", job.finished - job.submitted)
            if job.state == "cancelled" or self._jobs.get(job.id) is not job:
                shutil.rmtree(job.folder, ignore_errors=True)  # nobody wants these any more
            else:
                job.result = result
                job.state = "done" if result.status in ("ok", "suspect") else "failed"
                job.error = result.error_line() if job.state == "failed" else None
                self.counts[job.state] += 1
                if self.log is not None:
                    self.log(f"{job.id[:8]} {job.name}: {job.error or 'done'} ({job.finished - job.submitted:.1f} s)")
            self._changed(job)

    def get(self, job_id: str) -> ServerJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobError(f"no job {job_id} (finished jobs are kept {self.ttl:g} s, or until deleted)", 404)
        return job

    def jobs(self) -> list[ServerJob]:
        with self._lock:
            return list(self._jobs.values())

    def delete(self, job_id: str) -> tuple[str, str | None]:
        """Cancel the job if it has not finished, remove its files, forget it: (the state it ended in, a note)."""
        job = self.get(job_id)
        with self._lock:
            self._jobs.pop(job.id, None)
            finished = job.state in FINISHED
            if finished:
                shutil.rmtree(job.folder, ignore_errors=True)
                return job.state, None
        # Queued: dropped before any worker sees it. Running: it finishes in its worker (a
        # worker cannot be stopped mid-job without losing its models); its files are removed then.
        dropped = job.future is not None and self.pool.cancel(job.future)  # not under this table's lock
        with self._lock:
            if dropped:
                self._outstanding.discard(job.future)
                shutil.rmtree(job.folder, ignore_errors=True)
            if job.state not in FINISHED:
                job.state, job.finished = "cancelled", time.monotonic()
                self.counts["cancelled"] += 1
            self._changed(job)
        return "cancelled", None if dropped else "it was running: it finishes on its worker and its files are removed then"

    def expire(self, now: float | None = None) -> int:
        """Forget finished jobs older than the TTL and remove their files; how many went."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [j for j in self._jobs.values() if j.finished is not None and now - j.finished > self.ttl]
            for job in old:
                del self._jobs[job.id]
                shutil.rmtree(job.folder, ignore_errors=True)
            self.counts["expired"] += len(old)
        return len(old)

    def position(self, job: ServerJob) -> int | None:
        """0 for the next job to start; None once it has."""
        if job.state != "queued":
            return None
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state == "queued" and j.submitted < job.submitted)

    @property
    def active(self) -> int:
        """Jobs still in the pool (queued or running, cancelled running ones too)."""
        with self._lock:
            return len(self._outstanding)

    def unfetched(self) -> int:
        """Finished-ok jobs whose results no client has deleted yet (a draining server waits a little for them)."""
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state == "done")

    # ------------------------------------------------------------------ reports
    def status(self, job: ServerJob, base: str = "/v1/jobs") -> dict:
        with self._lock:
            record = None
            if job.result is not None:
                record = job.result.record()
                record["output"] = job.mesh_path.name if job.state == "done" else None
                record["files"] = [p.name for p in job.result.files]
            files = [{**f, "url": f"{base}/{job.id}/files/{f['name']}"} for f in job.files()]
            return {
                "id": job.id,
                "name": job.name,
                "state": job.state,
                "stage": job.stage,
                "step": job.step,
                "total": job.total,
                "position": self.position(job),
                "error": job.error,
                "result": record,
                "files": files,
            }

    def metrics(self) -> dict:
        pool = self.pool.stats()
        with self._lock:
            states = [j.state for j in self._jobs.values()]
            return {
                "uptime_seconds": round(time.monotonic() - self.started, 3),
                "queue_depth": states.count("queued"),
                "running": states.count("running"),
                "kept": {s: states.count(s) for s in FINISHED},
                "totals": dict(self.counts),
                "stage_seconds": self.stage_seconds.report(),
                "job_seconds": self.job_seconds.report(),
                "workers": pool["workers"],
            }

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
