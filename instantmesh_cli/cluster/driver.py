"""The driver of ``imesh generate --ray``: inputs listed here, the chain run by Ray Data actors.

The driver lists the inputs (local paths, folders, globs, ``file://`` and remote URIs) and
names the outputs exactly as a local batch would; it never reads an image. Each input
becomes one row; a Ray Data pipeline (``from_items`` → ``map_batches(ChainActor)``) runs
the rows in an actor pool (one actor per GPU, ``num_gpus=1``; CPU actors where the cluster
has no GPU) and the driver reports each finished job as it arrives.

Faults: a bad input is a failed job like in any batch. An actor that dies is restarted
by Ray (``max_restarts``) and the rows it held are run again (``max_task_retries``);
outputs are written atomically under names fixed by the driver, so a row run twice
writes the same bytes to the same place and is reported once. A row whose actor dies
on every try is reported failed; the rest of the batch goes on.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterable

from instantmesh_cli.cluster import storage
from instantmesh_cli.errors import ImeshError, UsageError

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions

AUTO = "auto"
MAX_RESTARTS = 4  # an actor that keeps dying is given up after this many restarts
MAX_TASK_RETRIES = 2  # a row is run at most 3 times (its actor died under it twice)
PER_ACTOR_IN_FLIGHT = 3  # one row per group (front, gpu, back) in each actor

# What shapes a result travels to the actors (the same weights revisions, hub, limits);
# where things are cached stays each node's own business.
FORWARDED_ENV = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "IMESH_MAX_PIXELS", "IMESH_HUB_TIMEOUT")


@dataclass(frozen=True)
class Source:
    """One input: how the user (or a listed folder) names it, and where an actor reads it."""

    name: str
    location: str  # an absolute local path or a URI
    stem: str
    subdir: PurePosixPath = PurePosixPath()


def expand_sources(args: Iterable[str], *, recursive: bool = False) -> list[Source]:
    """Local paths, folders and globs as a local batch expands them; URIs of files and folders listed
    through their filesystem. A missing input is kept (it is reported failed); duplicates go."""
    from instantmesh_cli.inputs import IMAGE_SUFFIXES, STDIN, expand_inputs

    sources: list[Source] = []
    seen: set[str] = set()

    def add(source: Source) -> None:
        if source.location not in seen:
            seen.add(source.location)
            sources.append(source)

    for arg in args:
        if arg == STDIN:
            raise UsageError("--ray reads inputs where the actors are: give paths or URIs, not '-'")
        if storage.scheme(arg) is None:
            for item in expand_inputs([arg], recursive=recursive):
                add(Source(item.name, os.path.abspath(item.path), item.stem, PurePosixPath(item.subdir.as_posix())))
            continue
        if any(ch in arg for ch in "*?["):
            raise UsageError(f"{arg}: patterns are not expanded in URIs; name the folder (with --recursive for sub-folders)")
        listed = storage.list_images(arg, recursive=recursive, suffixes=IMAGE_SUFFIXES)
        if listed is None:
            add(Source(arg, arg, PurePosixPath(arg).stem))
        elif not listed:
            raise UsageError(f"no images in folder {arg}" + ("" if recursive else " (use --recursive for sub-folders)"))
        else:
            for uri, sub in listed:
                add(Source(uri, uri, PurePosixPath(uri).stem, sub))
    if not sources:
        raise UsageError("no input images given")
    return sources


def plan_targets(sources: list[Source], output: str, fmt: str | None, formats: tuple[str, ...]) -> tuple[list[str], str]:
    """Each input's mesh target as the user would name it (a path or URI) and the format:
    the same names a local batch gives (``-o DIR/``: sub-folders kept, clashes numbered)."""
    from instantmesh_cli.inputs import InputItem, file_target, output_names, plan_outputs

    if output == "-":
        raise UsageError("-o - (GLB on stdout) runs in this process; drop --ray")
    if storage.scheme(output) is None:
        items = [InputItem(path=None, name=s.name, stem=s.stem, subdir=Path(s.subdir)) for s in sources]
        paths, ext = plan_outputs(items, output, fmt, formats)
        return [str(p) for p in paths], ext
    if fmt is not None and fmt not in formats:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(formats)}")
    if output.endswith("/") or len(sources) > 1 or storage.is_folder(output):
        ext = fmt or "glb"
        return [storage.join(output, name) for name in output_names(sources, ext)], ext
    target, ext = file_target(output, fmt, formats)
    return [target], ext


# ---------------------------------------------------------------------------- the cluster


def connect(address: str, *, verbose: bool = False) -> None:
    """``auto``: RAY_ADDRESS, else the cluster running on this machine, else a new local one;
    otherwise the address as Ray takes it (``host:6379``, ``ray://host:10001``, ``local``).
    Ray's own log lines reach stderr only when ``verbose`` (``--debug``)."""
    import logging

    level = logging.INFO if verbose else logging.ERROR
    if not verbose:
        # The driver's Ray core logs notices (e.g. about actor constructor arguments) at error
        # level on stderr; what matters to the user comes back in the jobs.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    import ray

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    from instantmesh_cli import settings

    for repo in (settings.ZERO123PLUS_REPO, settings.INSTANTMESH_REPO, settings.DINO_REPO):
        var = settings.revision_env_var(repo)
        if var in os.environ:
            env[var] = os.environ[var]
    try:
        ray.init(
            address=None if address == AUTO else address,
            # Actors' own prints would land on this process's stdout, which carries only data;
            # what they have to say comes back in the jobs. Their logs stay in the Ray session folder.
            log_to_driver=False,
            logging_level=level,
            runtime_env={"env_vars": env} if env else None,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = "RAY_ADDRESS / a running cluster" if address == AUTO else address
        raise ImeshError(f"cannot reach the Ray cluster at {where}: {storage._one_line(exc)}") from None
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # imesh shows its own progress on stderr
    context.print_on_execution_start = False
    context.max_errored_blocks = -1  # a row whose actor died on every try is reported, not the end of the batch
    logging.getLogger("ray.data").setLevel(level)


@dataclass(frozen=True)
class Layout:
    actors: int
    num_gpus: float
    num_cpus: float
    device: str


def layout(options: "PipelineOptions", actors: int | None) -> Layout:
    """One actor per GPU in the cluster (``--device cpu``, or no GPU: one CPU actor per node)."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus and options.device not in ("cpu",):
        return Layout(actors or gpus, 1, 1, "cuda")
    if options.device not in ("auto", "cpu"):
        raise UsageError(f"--device {options.device}: the Ray cluster has no GPU")
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return Layout(actors or max(1, nodes), 0, 1, "cpu")


def run_rows(
    options: "PipelineOptions",
    sources: list[Source],
    targets: list[str],
    fmt: str,
    *,
    address: str,
    actors: int | None = None,
    skip_existing: bool = False,
    save_views: bool = False,
    save_cutout: bool = False,
    on_done: Callable[["Job", dict], None],
    on_start: Callable[[], None] | None = None,
    verbose: bool = False,
) -> None:
    """Run every input on the cluster; ``on_done(job, {"engine": "ray", "node": ...})`` once per input, as jobs
    finish (skipped ones first). Ray is shut down (or disconnected from) before returning."""
    import ray

    from instantmesh_cli.chain.job import derive_seed

    if actors is not None and actors < 1:
        raise UsageError(f"--ray-actors must be 1 or more, got {actors}")
    for target in targets:
        path = storage.local_path(target)
        if path is not None:
            from instantmesh_cli.cli.common import ensure_writable

            ensure_writable(path)  # before the cluster starts: a read-only folder fails now
    if options.weights_dir is not None:
        options = options.replace(weights_dir=Path(os.path.abspath(options.weights_dir)))
    rows = [
        {"index": i, "name": s.name, "source": s.location, "target": storage.absolute(t), "shown": t,
         "seed": derive_seed(options.seed, s.name), "fmt": fmt, "save_views": save_views, "save_cutout": save_cutout}
        for i, (s, t) in enumerate(zip(sources, targets))
    ]
    skipped = storage.existing(targets) if skip_existing else [False] * len(rows)
    connect(address, verbose=verbose)
    try:
        plan = layout(options, actors)
        actor_options = options.replace(device=plan.device)
        for row, skip in zip(rows, skipped):
            if skip:
                on_done(_unrun(row, actor_options, "skipped"), {"engine": "ray", "node": None})
        todo = [row for row, skip in zip(rows, skipped) if not skip]
        if not todo:
            return
        if on_start is not None:
            on_start()
        with warnings.catch_warnings():
            # Ray Data takes max_restarts / max_task_retries only through the deprecated **ray_remote_args
            # (until Ray 2.64, hence the extra's bound); without them actors and rows are retried forever.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
            dataset = _pipeline(ray, todo, plan, actor_options)
        reported: set[int] = set()
        for result in dataset.iter_rows():
            if result["broken"]:
                raise ImeshError(f"a Ray actor on node {result['node'][:12]} could not load the models: {result['broken']}")
            index = int(result["index"])
            if index in reported:
                continue  # Ray returns each row's result once; this keeps the one-line-per-input promise if not
            reported.add(index)
            on_done(pickle.loads(result["job"]), {"engine": "ray", "node": result["node"]})
        for row in todo:
            if row["index"] not in reported:
                on_done(_unrun(row, actor_options, "failed", LOST), {"engine": "ray", "node": None})
    finally:
        ray.shutdown()
        # After the actors are gone: the temporary files of writes that a killed actor left.
        storage.sweep_temporaries(r["target"] for r in rows)


def _pipeline(ray, rows: list[dict], plan: Layout, options: "PipelineOptions"):
    """One block per row (so rows spread over the actors one by one), through the actor pool."""
    from ray.data import ActorPoolStrategy

    from instantmesh_cli.cluster.actor import ChainActor

    return ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        ChainActor,
        batch_size=1,
        compute=ActorPoolStrategy(
            size=min(plan.actors, len(rows)), max_tasks_in_flight_per_actor=PER_ACTOR_IN_FLIGHT,
            max_concurrent_calls_per_actor=PER_ACTOR_IN_FLIGHT, enable_true_multi_threading=True,
        ),
        fn_constructor_kwargs={"options": options},
        num_gpus=plan.num_gpus or None,
        num_cpus=plan.num_cpus,
        max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_TASK_RETRIES,
    )


LOST = (f"its Ray actor died on each of {MAX_TASK_RETRIES + 1} tries "
        "(out of memory? try --low-vram or a smaller --texture-size)")


def _unrun(row: dict, options: "PipelineOptions", status: str, error: str | None = None) -> "Job":
    """The job of a row no actor ran (skipped, or lost), for reporting."""
    from instantmesh_cli.cluster.actor import job_for

    job = job_for(row, options, Path(PurePosixPath(row["target"]).name))
    job.status, job.error = status, error  # type: ignore[assignment]
    return job
