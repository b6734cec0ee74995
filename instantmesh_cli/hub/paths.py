"""Where things live: imesh's own cache, the huggingface_hub cache, ``--weights-dir``; inter-process locks."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator

from instantmesh_cli.errors import WeightsError
from instantmesh_cli.settings import cache_dir, weights_dir_setting  # noqa: F401 - hub code asks for cache_dir here

# Bounded wait for the Hub's answer to a metadata request (and for `imesh doctor`'s probe).
DEFAULT_HUB_TIMEOUT_S = 5.0


def hf_cache_dir() -> Path:
    """The huggingface_hub cache that downloads go to (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_timeout() -> float:
    """Seconds to wait for the Hub to answer (``IMESH_HUB_TIMEOUT``)."""
    try:
        return max(0.5, float(os.environ.get("IMESH_HUB_TIMEOUT", DEFAULT_HUB_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_HUB_TIMEOUT_S


def resolve_weights_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """``weights_dir``, else ``IMESH_WEIGHTS_DIR``; ``None`` if neither is set."""
    path = weights_dir_setting(weights_dir)
    if path is None:
        return None
    if not path.is_dir():
        raise WeightsError(f"weights folder {path} does not exist",
                           hint="create it with `imesh download --to DIR` on a connected machine")
    return path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An inter-process lock for work on ``path``.

    Lock files live in imesh's cache, not beside ``path``, so that a weights
    folder or the HF cache can be read-only.
    """
    from filelock import FileLock

    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(str(path.absolute()).encode()).hexdigest()
    with FileLock(str(locks / f"{name}.lock")):
        yield
