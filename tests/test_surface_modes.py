"""The benchmark's baseline path (every FlexiCubes cube evaluated) gives exactly the fast path's mesh."""

import numpy as np
import torch

from instantmesh_cli.reconstruction import config
from instantmesh_cli.reconstruction.loading import build_model
from instantmesh_cli.reconstruction.synthetic import shape_state


def test_every_cube_equals_surface_only():
    cfg = config.tiny_config(config.INSTANT_MESH_BASE)
    model = build_model(cfg)
    # Random deformation and weight heads, so the weights really change the vertices.
    model.load_state_dict(shape_state(cfg, seed=3, branch_scale=0.05, random_surface_heads=True))
    model.eval()
    images = torch.rand(1, 6, 3, cfg.input_size, cfg.input_size)
    from instantmesh_cli.reconstruction.cameras import zero123plus_cameras

    planes = model.forward_planes(images, zero123plus_cameras(6)[None])
    fast = model.extract_mesh(planes)
    full = model.extract_mesh(planes, surface_only=False)
    assert fast.num_faces > 100
    assert np.array_equal(fast.faces, full.faces)
    assert np.array_equal(fast.vertices, full.vertices)
