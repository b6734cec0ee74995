"""Models: on a GPU the reconstruction model loads in a thread beside the first views."""

import threading

import pytest
import torch

from instantmesh_cli.chain.models import Models
from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.errors import WeightsError


def _on_a_gpu(monkeypatch, load):
    models = Models(PipelineOptions(device="cpu"))
    models._multiview = object()  # resident already: only the reconstruction model is left to load
    models.device = torch.device("cuda")  # the branch under test; the stand-in loader below touches no GPU
    monkeypatch.setattr(models, "_load_reconstructor_beside", load)
    from instantmesh_cli.texture import raster

    monkeypatch.setattr(raster, "preload", lambda device, notice: None)  # nvdiffrast's plugin: a GPU's business
    return models


def test_the_load_returns_while_the_reconstruction_model_loads_and_its_first_use_waits(monkeypatch):
    gate, made = threading.Event(), object()

    def slow_load():
        assert gate.wait(10)
        return made

    models = _on_a_gpu(monkeypatch, slow_load)
    models.load()
    assert models._reconstructor is None  # still loading
    gate.set()
    assert models.reconstructor is made and models.reconstructor is made
    assert models.load() == 0.0  # nothing left to load


def test_a_failed_background_load_raises_at_first_use(monkeypatch):
    def broken():
        raise WeightsError("instant-mesh-large.safetensors is corrupted")

    models = _on_a_gpu(monkeypatch, broken)
    models.load()
    with pytest.raises(WeightsError, match="corrupted"):
        models.reconstructor


def test_on_the_cpu_both_load_in_the_call(monkeypatch):
    models = Models(PipelineOptions(device="cpu"))
    models._multiview = object()
    made = object()
    monkeypatch.setattr(models, "_load_reconstructor", lambda: made)
    models.load()
    assert models._reconstructor is made
