"""Shared test set-up: one CPU thread, isolated caches, no real network."""

from __future__ import annotations

import os
import tempfile

# Isolate every cache before any library that reads these at import time is loaded.
_SANDBOX = tempfile.mkdtemp(prefix="imesh-tests-")
os.environ.setdefault("HF_HOME", os.path.join(_SANDBOX, "hf"))
os.environ.setdefault("U2NET_HOME", os.path.join(_SANDBOX, "u2net"))
os.environ.setdefault("IMESH_CACHE_DIR", os.path.join(_SANDBOX, "imesh"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
