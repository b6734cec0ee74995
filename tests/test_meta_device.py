"""on_meta_device: shapes only, no initialisers run on meta tensors, nothing skipped elsewhere (other devices, threads)."""

import subprocess
import sys
import textwrap
import threading

import torch
from torch import nn

from instantmesh_cli.meta_device import on_meta_device


def test_modules_are_built_on_the_meta_device():
    with on_meta_device():
        layer = nn.Linear(8, 4)
        embedding = nn.Embedding(10, 3)
        norm = nn.LayerNorm(4)
        noise = torch.randn(2, 3)
        scaled = nn.Parameter(torch.empty(1, 5, 8))
        nn.init.trunc_normal_(scaled, std=0.02)
    for t in (layer.weight, layer.bias, embedding.weight, norm.weight, noise, scaled):
        assert t.is_meta
    assert layer.weight.shape == (4, 8) and embedding.weight.shape == (10, 3) and noise.shape == (2, 3)


def test_tensors_on_other_devices_are_still_initialised_inside():
    with on_meta_device():
        cpu = torch.zeros(1000, device="cpu")
        nn.init.normal_(cpu)
        drawn = torch.randn(1000, device="cpu")
    assert not cpu.is_meta and cpu.std() > 0.5
    assert drawn.device.type == "cpu" and drawn.std() > 0.5


def test_another_thread_keeps_its_initialisers():
    inside, done = threading.Event(), threading.Event()
    built = {}

    def other():
        inside.wait()
        torch.manual_seed(0)
        built["layer"] = nn.Linear(64, 64)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with on_meta_device():
        inside.set()
        done.wait(30)
    thread.join()
    weight = built["layer"].weight
    assert not weight.is_meta and weight.abs().max() > 0  # kaiming-uniform values, not skipped zeros/garbage
    torch.manual_seed(0)
    assert torch.equal(weight, nn.Linear(64, 64).weight)


def test_building_the_models_on_meta_does_not_import_torch_dynamo():
    # Meta-device initialisers and products run through torch's Python references, whose first call imports
    # torch._dynamo (1.5-1.9 s on the 2-core VM).
    code = textwrap.dedent("""
        import sys
        from instantmesh_cli import random_weights as rw
        from instantmesh_cli.multiview.clip_vision import ClipVisionConfig, ClipVisionTower
        from instantmesh_cli.reconstruction.loading import build_model
        from instantmesh_cli.meta_device import on_meta_device
        from instantmesh_cli.reconstruction.config import variant_config
        model = build_model(variant_config("instant-mesh-large"), "meta")
        with on_meta_device():
            tower = ClipVisionTower(ClipVisionConfig())
        print("torch._dynamo" in sys.modules, next(model.parameters()).is_meta, next(tower.parameters()).is_meta)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split() == ["False", "True", "True"]
