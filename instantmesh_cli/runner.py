"""Running a batch: one outcome per input, bad files reported, CPU work overlapped with the GPU.

Each image goes through three phases:

- *front* (CPU): read the file, decode, background removal and recentring;
- *core* (GPU): six views, triplane, mesh;
- *back* (CPU + some GPU): texture refinement, UV unwrap, bake, export.

With ``overlap=True`` the front of image i+1 and the back of image i-1 run in
worker threads while image i is on the GPU. Every output is written atomically,
so Ctrl-C leaves finished files intact and no partial file behind.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal

from instantmesh_cli.batch import InputItem
from instantmesh_cli.errors import ImeshError

if TYPE_CHECKING:
    from instantmesh_cli.images import PreparedImage
    from instantmesh_cli.pipeline import ImeshPipeline

Status = Literal["ok", "failed", "skipped"]


@dataclass
class ItemOutcome:
    """The result of one input, as reported in the summary table and the JSON lines."""

    item: InputItem
    output: Path | None  # None: stdout
    status: Status
    error: str | None = None
    seed: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time from start to finish of this item
    vertices: int | None = None
    faces: int | None = None
    files: list[Path] = field(default_factory=list)
    psnr_before: float | None = None
    psnr_after: float | None = None

    def to_json(self) -> dict:
        return {
            "input": self.item.name,
            "output": "-" if self.output is None and self.status == "ok" else (str(self.output) if self.output else None),
            "status": self.status,
            "error": self.error,
            "seed": self.seed,
            "seconds": {k: round(v, 4) for k, v in self.timings.items()},
            "total_seconds": round(self.seconds, 4),
            "vertices": self.vertices,
            "faces": self.faces,
            "psnr_before": None if self.psnr_before is None else round(self.psnr_before, 3),
            "psnr_after": None if self.psnr_after is None else round(self.psnr_after, 3),
            "files": [str(p) for p in self.files],
        }


@dataclass
class Extras:
    """Optional side outputs next to each mesh."""

    save_views: bool = False
    save_cutout: bool = False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ImeshError):
        return str(exc)
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "out of GPU memory; try --low-vram, a smaller --texture-size, or --dtype fp16"
    return f"{type(exc).__name__}: {exc}"


def _save_png(image, target: Path) -> Path:
    from instantmesh_cli.fileio import atomic_path

    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG")
    return target


@dataclass
class _Front:
    prepared: "PreparedImage"
    seconds: float


@dataclass
class _Core:
    outcome: ItemOutcome
    grid: object
    recon: object
    images: object
    started: float


class BatchRunner:
    """Runs ``items`` through ``pipe`` and yields one :class:`ItemOutcome` per item, in input order."""

    def __init__(
        self,
        pipe: "ImeshPipeline",
        items: list[InputItem],
        outputs: list[Path | None],
        fmt: str,
        *,
        skip_existing: bool = False,
        overlap: bool = True,
        extras: Extras = Extras(),
        read_stdin: Callable[[], bytes] = lambda: sys.stdin.buffer.read(),
        write_stdout: Callable[[bytes], None] | None = None,
    ):
        self.pipe = pipe
        self.items = items
        self.outputs = outputs
        self.fmt = fmt
        self.skip_existing = skip_existing
        self.overlap = overlap
        self.extras = extras
        self.read_stdin = read_stdin
        self.write_stdout = write_stdout or _write_stdout

    # ------------------------------------------------------------------ phases
    def _front(self, item: InputItem) -> _Front:
        from instantmesh_cli.images import load_image

        start = time.perf_counter()
        if item.is_stdin:
            image = load_image(self.read_stdin(), name="stdin")
        else:
            image = load_image(item.path)
        prepared = self.pipe.prepare(image, item.name)
        return _Front(prepared, time.perf_counter() - start)

    def _core(self, item: InputItem, output: Path | None, front: _Front, started: float) -> _Core:
        pipe = self.pipe
        seed = pipe.seed_for(item.name)
        outcome = ItemOutcome(item, output, "ok", seed=seed, timings={"prepare": front.seconds})
        t = time.perf_counter()
        if pipe.load():  # the first image of a process pays for loading the models
            outcome.timings["load"] = time.perf_counter() - t
        t = time.perf_counter()
        grid = pipe.generate_views(front.prepared.image, seed)
        pipe._sync()
        t2 = time.perf_counter()
        recon, images = pipe.reconstruct(grid)
        pipe._sync()
        outcome.timings["multiview"] = t2 - t
        outcome.timings["reconstruct"] = time.perf_counter() - t2
        if self.extras.save_cutout and output is not None:
            outcome.files.append(_save_png(front.prepared.image, output.with_name(f"{output.stem}_cutout.png")))
        if self.extras.save_views and output is not None:
            outcome.files.append(_save_png(grid, output.with_name(f"{output.stem}_views.png")))
        return _Core(outcome, grid, recon, images, started)

    def _back(self, core: _Core) -> ItemOutcome:
        from instantmesh_cli.export import encode_glb, export_mesh

        outcome, pipe = core.outcome, self.pipe
        mesh = core.recon.mesh
        if pipe.runs_texture_stage:
            t = time.perf_counter()
            mesh, report = pipe.texture(mesh, core.recon.planes, core.images)
            pipe._sync()
            outcome.timings["texture"] = time.perf_counter() - t
            outcome.psnr_before, outcome.psnr_after = report.psnr_before, report.psnr_after
        t = time.perf_counter()
        if outcome.output is None:
            self.write_stdout(encode_glb(mesh))
        else:
            outcome.files[:0] = export_mesh(mesh, outcome.output, self.fmt)
        outcome.timings["export"] = time.perf_counter() - t
        outcome.vertices, outcome.faces = mesh.num_vertices, mesh.num_faces
        outcome.seconds = time.perf_counter() - core.started
        return outcome

    # ------------------------------------------------------------------ driver
    def _failed(self, item: InputItem, output: Path | None, exc: BaseException, started: float) -> ItemOutcome:
        return ItemOutcome(item, output, "failed", error=_describe(exc), seconds=time.perf_counter() - started)

    def __iter__(self) -> Iterator[ItemOutcome]:
        todo: list[tuple[InputItem, Path | None]] = []
        for item, output in zip(self.items, self.outputs):
            if self.skip_existing and output is not None and output.exists():
                yield ItemOutcome(item, output, "skipped", error=None)
            else:
                todo.append((item, output))
        if not todo:
            return
        workers = 1 if self.overlap else 0
        front_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imesh-front") if workers else None
        back_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imesh-back") if workers else None

        def submit(pool, fn, *args) -> Future:
            if pool is None:
                fut: Future = Future()
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - carried to the consumer like a pool would
                    fut.set_exception(exc)
                return fut
            return pool.submit(fn, *args)

        pending_back: tuple[InputItem, Path | None, float, Future] | None = None
        try:
            started = time.perf_counter()
            next_front = submit(front_pool, self._front, todo[0][0])
            for index, (item, output) in enumerate(todo):
                front_future, front_started = next_front, started
                started = time.perf_counter()
                if index + 1 < len(todo) and not todo[index + 1][0].is_stdin:
                    next_front = submit(front_pool, self._front, todo[index + 1][0])
                core: _Core | None = None
                try:
                    front = front_future.result()
                    core = self._core(item, output, front, front_started)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bad input must not stop the batch
                    failure = self._failed(item, output, exc, front_started)
                else:
                    failure = None
                # Results leave in input order: the previous back phase finishes first.
                if pending_back is not None:
                    yield self._collect(pending_back)
                    pending_back = None
                if failure is not None:
                    yield failure
                    continue
                pending_back = (item, output, front_started, submit(back_pool, self._back, core))
            if pending_back is not None:
                yield self._collect(pending_back)
                pending_back = None
        finally:
            for pool in (front_pool, back_pool):
                if pool is not None:
                    # Let a running export finish (it writes atomically); drop what has not started.
                    pool.shutdown(wait=True, cancel_futures=True)

    def _collect(self, pending: tuple[InputItem, Path | None, float, Future]) -> ItemOutcome:
        item, output, started, future = pending
        try:
            return future.result()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            return self._failed(item, output, exc, started)


def _write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
