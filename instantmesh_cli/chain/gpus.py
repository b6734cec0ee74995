"""``--gpus``: the one parser that turns a GPU spec (``all``, a count, or GPU ids) into the
device names a :class:`~instantmesh_cli.chain.workers.WorkerPool` runs its workers on, with a
one-line usage error for anything else. torch is imported only when the spec needs the
machine's GPU count.
"""

from __future__ import annotations


def parse_gpus(spec: str | None, *, available: int | None = None) -> list[str]:
    """``all`` / ``0,1`` / ``2`` (the first N) → ["cuda:0", ...]; a one-line usage error otherwise."""
    from instantmesh_cli.errors import UsageError

    if spec is None:
        return []
    if available is None:
        import torch

        available = torch.cuda.device_count()
    text = spec.strip().lower()
    if text == "all":
        ids = list(range(available))
    elif "," in text or text.startswith("cuda"):
        try:
            ids = [int(part.replace("cuda:", "")) for part in text.split(",") if part]
        except ValueError:
            raise UsageError(f"--gpus {spec!r}: use all, a count (2) or GPU ids (0,1)") from None
    else:
        try:
            ids = list(range(int(text)))
        except ValueError:
            raise UsageError(f"--gpus {spec!r}: use all, a count (2) or GPU ids (0,1)") from None
    if not ids:
        raise UsageError(f"--gpus {spec}: this machine has no CUDA GPU" if available == 0 else f"--gpus {spec}: no GPU chosen")
    wrong = [i for i in ids if not 0 <= i < available]
    if wrong:
        raise UsageError(f"--gpus {spec}: GPU {wrong[0]} does not exist (this machine has {available})")
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus {spec}: a GPU is named twice")
    return [f"cuda:{i}" for i in ids]
