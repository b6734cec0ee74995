"""The chain on a Ray cluster: ``imesh generate --ray``.

- ``storage``: locations (local paths, ``file://``, ``s3://``, ``gs://``… through pyarrow / fsspec):
  listing, reading, atomic publishing;
- ``actor``: :class:`~instantmesh_cli.cluster.actor.ChainActor`, the Ray analogue of a
  :class:`~instantmesh_cli.chain.workers.WorkerPool` worker: it holds one ``Models`` and runs the one chain;
- ``driver``: connect, plan the rows, run the Ray Data pipeline, stream the finished jobs back.

Ray is an optional extra (``pip install "instantmesh-cli[ray]"``); nothing here is imported
by the base install's commands unless ``--ray`` is given.
"""

from __future__ import annotations

from instantmesh_cli.errors import UsageError

INSTALL_HINT = 'pip install "instantmesh-cli[ray]"'


def require_ray() -> None:
    """A one-line usage error when Ray Data (or pyarrow) is not installed."""
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(f"--ray needs Ray Data, which is not installed; install it with: {INSTALL_HINT}") from None
