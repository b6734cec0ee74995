"""The code that runs inside a worker process of a :class:`~instantmesh_cli.chain.workers.WorkerPool`:
``_worker_main`` (load the models, report ready, run the jobs it is sent through a
:class:`~instantmesh_cli.chain.run.BatchRunner`, report progress, results and CUDA memory) and
the signal helpers that leave stopping to the parent. Workers start with multiprocessing
"spawn", which pickles ``_worker_main`` by its qualified name: it must stay importable here.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions


def _stop_with_parent(parent: int) -> None:
    """A worker whose parent is gone (killed without a word) exits instead of waiting for jobs forever."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _worker_main(slot: int, device: str, options: "PipelineOptions", plan_name: str, overlap: bool, inbox, outbox) -> None:
    """Entry point of a worker process: load, report ready, run jobs until the sentinel."""
    import signal

    from instantmesh_cli.startup import prepare_process

    prepare_process()  # a spawned worker starts afresh: before diffusers is imported, as the CLI does
    from instantmesh_cli.chain import stages
    from instantmesh_cli.chain.models import Models
    from instantmesh_cli.chain.run import BatchRunner

    # The parent alone decides when workers stop: a Ctrl-C at the terminal goes to the
    # parent's process group, not here. SIGTERM from the parent unwinds like Ctrl-C, so an
    # output being written is removed, not left half-written.
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    threading.Thread(target=_stop_with_parent, args=(os.getppid(),), daemon=True).start()
    plan = getattr(stages, plan_name)
    try:
        models = Models(options.replace(device=device))
        started = time.perf_counter()
        for stage in plan:
            if stage.name == "load":
                stage.run(models, None)
        outbox.put(("ready", slot, os.getpid(), time.perf_counter() - started))
    except KeyboardInterrupt:
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
        outbox.put(("broken", slot, os.getpid(), stages.describe(exc)))
        return

    ids: dict[int, int] = {}  # id(job) -> the parent's job id

    def jobs():
        while True:
            message = inbox.get()
            if message is None:
                return
            job_id, job = message

            def progress(stage: str, done: int, total: int | None, _id=job_id) -> None:
                outbox.put(("progress", slot, _id, (stage, done, total)))

            job.progress = progress
            job.options = job.options.replace(device=device)
            ids[id(job)] = job_id
            yield job

    cuda = models.device.type == "cuda"

    def done(job: "Job") -> None:
        outbox.put(("done", slot, ids.pop(id(job)), job.detached()))
        if cuda:
            # Read here, in the process that owns the device: the parent holds no CUDA context.
            import torch

            outbox.put(("memory", slot, os.getpid(), {
                "allocated_bytes": torch.cuda.memory_allocated(models.device),
                "reserved_bytes": torch.cuda.memory_reserved(models.device),
                "peak_allocated_bytes": torch.cuda.max_memory_allocated(models.device),
            }))

    try:
        BatchRunner(models, plan, overlap=overlap).run(jobs(), done)
    except KeyboardInterrupt:
        pass
