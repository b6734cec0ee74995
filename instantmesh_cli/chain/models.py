"""Where weights meet models: the one composition root.

The model packages (``multiview/``, ``reconstruction/``) build networks from configs and
local files and never fetch; the weights layer (``hub``) finds and fetches files and
builds nothing. This module asks the second for paths and hands them to the first.

:class:`Models` holds one process's (or one GPU worker's) models, loaded once, on first
use, and shared by every job it runs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from instantmesh_cli import settings
from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.device import resolve_device, resolve_dtype

if TYPE_CHECKING:
    from concurrent.futures import Future
    from pathlib import Path

    import torch

    from instantmesh_cli.first_use import Replay
    from instantmesh_cli.multiview.pipeline import Zero123PlusPipeline
    from instantmesh_cli.reconstruction.config import LRMConfig
    from instantmesh_cli.reconstruction.model import ReconstructionModel
    from instantmesh_cli.settings import HubFile

# (file, bytes done, bytes total or None) while a weights file downloads: files that are
# already here report nothing; each one fetched reports under its own name.
DownloadProgress = Callable[[str, int, "int | None"], None]


def _per_file(progress: DownloadProgress | None, hub_file: "HubFile"):
    # The weights layer reports bytes, not which file they belong to: bind the name here.
    return None if progress is None else functools.partial(progress, str(hub_file))


def _folder_revisions(weights_dir: "Path | None") -> dict[str, str]:
    from instantmesh_cli import hub

    return hub.declared_revisions(hub.resolve_weights_dir(weights_dir))


def load_multiview_pipeline(
    *,
    device: "torch.device",
    dtype: "torch.dtype",
    offline: bool | None = None,
    weights_dir: "Path | None" = None,
    original_unet: bool = False,
    progress: DownloadProgress | None = None,
    **pipeline_options: Any,
) -> "Zero123PlusPipeline":
    """The Zero123++ v1.2 parts + InstantMesh's white-background UNet (or, with
    ``original_unet``, the v1.2 UNet and its grey fill), fetched or found, then built."""
    from instantmesh_cli import hub
    from instantmesh_cli.multiview.pipeline import Zero123PlusPipeline

    if pipeline_options.get("compile"):
        import torch._dynamo  # noqa: F401 - before diffusers, whose blocks then register with it as usual

    revisions = _folder_revisions(weights_dir)
    kw = {"offline": offline, "weights_dir": weights_dir}
    for f in settings.zero123plus_files(original_unet=original_unet, revisions=revisions):
        hub.fetch(f, progress=_per_file(progress, f), **kw)
    folder = hub.multiview_folder(original_unet=original_unet, revisions=revisions, **kw)  # every file is here now
    unet_weights = None
    if not original_unet:
        white = settings.white_unet_file(revisions)
        unet_weights = hub.weights_file(white, progress=_per_file(progress, white), **kw)
    from instantmesh_cli.chain.text_embeds import read_text_embeds, text_embeds_cache, write_text_embeds

    cache = text_embeds_cache(folder, dtype, device)
    cached = read_text_embeds(cache)
    pipe = Zero123PlusPipeline.from_folder(
        folder, unet_weights=unet_weights, dtype=dtype, device=device, text_embeds=cached, **pipeline_options
    )
    if cached is None:
        from instantmesh_cli.first_use import not_recorded

        with not_recorded():  # a later process reads the embedding from the cache
            pipe.drop_text_encoder()  # computes the embedding once; the 340 M-parameter encoder is freed
        write_text_embeds(cache, pipe.text_embeddings())
    return pipe


def load_reconstruction_model(
    name: str,
    *,
    device: "torch.device | str" = "cpu",
    dtype: "torch.dtype | None" = None,
    offline: bool | None = None,
    weights_dir: "Path | None" = None,
    progress: DownloadProgress | None = None,
) -> "ReconstructionModel":
    """The reconstruction model ``name`` (e.g. ``instant-mesh-large``): its checkpoint
    (converted once to safetensors by the weights layer) and DINO's configs; its architecture
    is the released one unless the weights folder carries its own (:func:`folder_lrm_config`)."""
    import torch

    from instantmesh_cli import hub
    from instantmesh_cli.reconstruction.loading import load_model

    variant = settings.get_variant(name)
    revisions = _folder_revisions(weights_dir)
    files = {f.filename: f for f in settings.lrm_files(variant.name, revisions)}
    kw = {"offline": offline, "weights_dir": weights_dir}
    checkpoint = files[variant.checkpoint]
    return load_model(
        folder_lrm_config(variant.name, weights_dir, revisions),
        hub.weights_file(checkpoint, progress=_per_file(progress, checkpoint), **kw),
        dino_config=hub.fetch(files["config.json"], progress=_per_file(progress, files["config.json"]), **kw),
        dino_preprocessor=hub.fetch(
            files["preprocessor_config.json"], progress=_per_file(progress, files["preprocessor_config.json"]), **kw),
        device=device,
        compute_dtype=dtype or torch.float32,
    )


def _stderr_notice(message: str) -> None:
    """Say on stderr what takes long and happens once (compiling for this machine)."""
    import sys

    sys.stderr.write(f"imesh: {message}\n")
    sys.stderr.flush()


def folder_lrm_config(name: str, weights_dir: "Path | None" = None, revisions: dict[str, str] | None = None) -> "LRMConfig":
    """The architecture of reconstruction model ``name``: the released one
    (``reconstruction.config.VARIANT_CONFIGS``), with the fields that the weights folder's
    ``imesh-lrm-config-<name>.json`` names replaced, when the folder has one.

    The official code keeps one YAML file per variant; a folder holding a fine-tuned or
    differently sized checkpoint says here what it is, and the strict loader then checks
    every tensor against that.
    """
    from instantmesh_cli import hub
    from instantmesh_cli.errors import WeightsError
    from instantmesh_cli.hub.locate import weights_dir_copy
    from instantmesh_cli.reconstruction.config import config_from_dict, variant_config

    variant = settings.get_variant(name)
    base = variant_config(variant.name)
    folder = hub.resolve_weights_dir(weights_dir)
    if folder is None:
        return base
    found = weights_dir_copy(settings.lrm_config_file(variant.name, revisions or {}), folder)
    if found is None:
        return base
    path, problem = found
    if problem is not None:
        raise hub.CorruptWeightsError(f"{path} is corrupted: {problem}", hint="write the folder again")
    try:
        cfg = config_from_dict(json.loads(path.read_text(encoding="utf-8")), base)
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise WeightsError(f"cannot use {path}: {exc}") from None
    if cfg.kind != variant.kind:
        raise WeightsError(f"{path} describes a {cfg.kind} model, but {variant.name} is a {variant.kind} model")
    return cfg


# The options that decide which models are loaded and how; the rest (seed, steps, texture
# size...) are per job, so one set of loaded models serves jobs that differ in them.
LOAD_FIELDS = ("model", "device", "dtype", "low_vram", "compile", "offline", "weights_dir")


class Models:
    """The models for one set of load options on one device, each loaded once on first use."""

    def __init__(self, options: PipelineOptions = PipelineOptions(), *, download_progress: DownloadProgress | None = None,
                 notice: Callable[[str], None] | None = None, single_job: bool = False):
        """``single_job``: the process runs one job and exits (a one-photo ``imesh generate``). Otherwise
        the load compiles (``--compile``) and captures the CUDA graph for the default job
        (``Zero123PlusPipeline.warm_up``), so that the first job already runs at speed; one job gains
        nothing from that warm-up (its only call compiles and captures anyway) and would run the
        encoders, the decoder and a write pass once more. Its views still replay a CUDA graph: on the
        H200 a first call captured and replayed in 2.41-2.45 s, eager in 2.44-2.54 s, same bytes."""
        self.options = options.check()
        self.notice = notice or _stderr_notice
        self.single_job = single_job
        self.warm_up_s = 0.0  # of the load: the passes compiled (--compile) and the CUDA graph captured
        if options.compile:  # before anything imports Inductor, which reads its cache settings once
            from instantmesh_cli.multiview.compiled import persist_compilation

            persist_compilation()
        self.device = resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device)
        if self.device.type == "cuda":  # here, before the load's threads start (group_norm_kernels says why)
            from instantmesh_cli.multiview.group_norm_kernels import keep_kernels_in_cache

            keep_kernels_in_cache()
        self.download_progress = download_progress
        self._removers: dict = {}
        self._multiview: "Zero123PlusPipeline | None" = None
        self._reconstructor: "ReconstructionModel | None" = None
        self._reconstructor_loading: "Future[ReconstructionModel] | None" = None
        self._reconstructor_deferred = False  # to load in a thread once the first views are under way
        self.first_use_replay: "Replay | None" = None  # what the load replayed of an earlier first job
        self._first_use_lock = threading.Lock()
        self._first_use_taken = False  # a replay ran, or a recording is under way or written
        self._warm_up_calls: tuple[str, ...] = ()  # what the load's warm-up ran, for the first job's recording

    def serves(self, options: PipelineOptions) -> bool:
        """Whether jobs with ``options`` can run on these models."""
        return all(getattr(options, f) == getattr(self.options, f) for f in LOAD_FIELDS)

    def remover(self, matting_model: str):
        """The rembg session for ``matting_model`` (background removal), created on first use."""
        if matting_model not in self._removers:
            from instantmesh_cli.images import BackgroundRemover

            self._removers[matting_model] = BackgroundRemover(matting_model, offline=self.options.offline,
                                                              weights_dir=self.options.weights_dir)
        return self._removers[matting_model]

    @property
    def multiview(self) -> "Zero123PlusPipeline":
        if self._multiview is None:
            self._multiview = self._warmed(self._build_multiview())
        return self._multiview

    def _build_multiview(self) -> "Zero123PlusPipeline":
        o = self.options
        return load_multiview_pipeline(
            device=self.device, dtype=self.dtype, offline=o.offline, weights_dir=o.weights_dir,
            progress=self.download_progress, low_vram=o.low_vram, compile=o.compile, compile_log=self.notice,
        )

    def _warmed(self, pipe: "Zero123PlusPipeline") -> "Zero123PlusPipeline":
        if self.single_job:
            return pipe
        o = self.options  # compilation and the CUDA graph for the default job now
        if self._first_use_taken or self.options.compile or self.device.type != "cuda":
            self.warm_up_s = pipe.warm_up(steps=o.steps, guidance=o.guidance, scheduler=o.scheduler)
            return pipe
        # No manifest was replayed, so this process's first job may record one; but once warmed up, its
        # views replay CUDA graphs that no recorder sees. The warm-up's own calls go first in it.
        from instantmesh_cli.first_use import noting

        with noting() as warm_up:
            self.warm_up_s = pipe.warm_up(steps=o.steps, guidance=o.guidance, scheduler=o.scheduler)
        self._warm_up_calls = tuple(warm_up.calls)
        return pipe

    # ------------------------------------------------------------------ first use (first_use.py)
    def _first_use_manifest(self, loads: "frozenset[str]") -> "Path | None":
        """Where the first-use manifest of jobs that load ``loads`` ("multiview", "reconstruction") lives;
        None where there is nothing to replay: off CUDA, compiled (the compiled passes run Inductor's
        code, not these operations), and without the multiview pipeline (the replay runs beside its load)."""
        if self.device.type != "cuda" or self.options.compile or "multiview" not in loads:
            return None
        from instantmesh_cli.first_use import manifest_path
        from instantmesh_cli.settings import cache_dir

        o = self.options
        return manifest_path(cache_dir(), model=o.model, dtype=str(self.dtype), low_vram=o.low_vram, loads=sorted(loads))

    def _take_first_use(self) -> bool:
        with self._first_use_lock:
            taken, self._first_use_taken = self._first_use_taken, True
        return not taken

    @contextlib.contextmanager
    def recording_first_use(self, loads: "frozenset[str]"):
        """While inside, note this thread's heavy GPU calls, for the loads of later processes that load
        ``loads`` to replay: once per process, when no such manifest exists and ``loads`` has a load
        that replays (a plan's stage group without its load stage records nothing)."""
        path = None if self._first_use_taken else self._first_use_manifest(loads)  # once taken: nothing per job
        if path is None or path.exists() or not self._take_first_use():
            yield
            return
        from instantmesh_cli.first_use import recording

        recorded = False
        try:
            with recording(path, known=self._warm_up_calls) as recorder:
                yield
            recorded = len(recorder.calls) > recorder.known
        finally:
            if not recorded:  # a job that failed before the GPU: the next one records
                with self._first_use_lock:
                    self._first_use_taken = False

    def _load_multiview_replaying(self, loads: "frozenset[str]") -> bool:
        """Load the multiview pipeline in a thread while this thread replays the manifest; False
        (nothing done) without one."""
        path = self._first_use_manifest(loads)
        if path is None:
            return False
        from instantmesh_cli.first_use import read_manifest, replay
        from instantmesh_cli.thread_pools import shared_pool

        calls = read_manifest(path)
        if calls is None or not self._take_first_use():
            return False
        building = shared_pool("models", 1).submit(self._build_multiview)
        self.first_use_replay = replay(calls, self.device)
        self._multiview = self._warmed(building.result())
        return True

    @property
    def reconstructor(self) -> "ReconstructionModel":
        if self._reconstructor is None:
            self._reconstructor_deferred = False
            loading, self._reconstructor_loading = self._reconstructor_loading, None
            self._reconstructor = loading.result() if loading is not None else self._load_reconstructor()
        return self._reconstructor

    def start_background_loads(self) -> None:
        """Start the loads that :meth:`load` left for later, each in a thread: the reconstruction model, when
        it was deferred. The multiview stage calls this once the GPU has the views' first step queued: each of
        the condition encoder's few hundred eager operations before that waits for the GIL behind a thread
        that runs Python (``gil.py``), while the steps after it are CUDA-graph replays the GPU runs behind."""
        if not self._reconstructor_deferred or self._reconstructor is not None or self._reconstructor_loading is not None:
            return
        self._reconstructor_deferred = False
        from instantmesh_cli.thread_pools import shared_pool

        self._reconstructor_loading = shared_pool("models", 1).submit(self._load_reconstructor_beside)

    def _load_reconstructor(self) -> "ReconstructionModel":
        o = self.options
        return load_reconstruction_model(
            o.model, device=self.device, dtype=self.dtype, offline=o.offline, weights_dir=o.weights_dir,
            progress=self.download_progress,
        )

    def _load_reconstructor_beside(self) -> "ReconstructionModel":
        """The reconstruction model, loaded on a stream of its own: its copies need not wait for the views'
        kernels; and with the GIL handed over often (``gil.py``), its Python does not hold up the views'."""
        import torch

        from instantmesh_cli.gil import responsive

        stream = torch.cuda.Stream(self.device)
        with responsive(), torch.cuda.stream(stream):
            model = self._load_reconstructor()
            stream.synchronize()
        return model

    def load(self, *, multiview: bool = True, reconstruction: bool = True) -> float:
        """Load what is asked and not yet resident; the seconds it took (0.0: nothing to load). On a GPU,
        with both asked, the reconstruction model loads later, in a thread: in a one-job process once the
        views are under way (:meth:`start_background_loads`), otherwise at once."""
        todo = (multiview and self._multiview is None) or (reconstruction and self._reconstructor is None)
        if not todo:
            return 0.0
        start = time.perf_counter()
        if reconstruction and self._reconstructor is None and self.device.type == "cuda":
            from instantmesh_cli.texture.raster import preload

            preload(self.device, self.notice)  # nvdiffrast's plugin loads beside the models, for the texture stage
        loads = frozenset(name for name, wanted in (("multiview", multiview), ("reconstruction", reconstruction)) if wanted)
        if multiview and self._multiview is None and not self._load_multiview_replaying(loads):
            self.multiview
        if reconstruction and self._reconstructor is None and self._reconstructor_loading is None:
            if multiview and self.device.type == "cuda":
                # In a thread while the GPU makes the first views (0.34 s of a one-photo cold start on the
                # H200): started by the multiview stage (start_background_loads) in a one-job process,
                # whose views come next; at once in one that has warmed up. The first use of
                # ``reconstructor`` starts it if nothing did, waits for it and raises what it raised.
                self._reconstructor_deferred = True
                if not self.single_job:
                    self.start_background_loads()
            else:
                self.reconstructor
        return time.perf_counter() - start
