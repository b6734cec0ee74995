"""Tiny reconstruction checkpoints in the released layout, for tests.

The weights themselves come from :mod:`instantmesh_cli.reconstruction.synthetic`;
this module serves them (fake hub) and writes them to files.

- :func:`serve_tiny_variant`: a tiny stand-in for a released variant on the fake hub.
- :func:`write_checkpoint`: the released ``.ckpt`` layout on disk.
"""

from __future__ import annotations

from pathlib import Path

import torch

from instantmesh_cli import settings
from instantmesh_cli.reconstruction import config
from instantmesh_cli.reconstruction.config import tiny_config
from instantmesh_cli.reconstruction.synthetic import (  # noqa: F401 - re-exported for the tests
    COLOR_GAIN,
    DINO_PREPROCESSOR,
    PREFIX,
    SEMI_AXES,
    checkpoint_bytes,
    dino_config_bytes,
    expected_color,
    octahedron_sdf,
    random_state,
    shape_state,
)



def write_checkpoint(path: str | Path, state: dict[str, torch.Tensor]) -> Path:
    path = Path(path)
    path.write_bytes(checkpoint_bytes(state))
    return path


def serve_tiny_variant(fake_hub, monkeypatch, name: str, state: dict[str, torch.Tensor], preprocessor: bytes = DINO_PREPROCESSOR):
    """Register a tiny stand-in for ``name`` and serve its checkpoint + DINO files on the fake hub."""
    variant = settings.get_variant(name)
    cfg = tiny_config(config.variant_config(name))
    monkeypatch.setitem(config.VARIANT_CONFIGS, name, cfg)
    monkeypatch.setattr(settings, "FILE_FACTS", {})
    sha = fake_hub.new_commit(settings.INSTANTMESH_REPO, {variant.checkpoint: checkpoint_bytes(state)})
    monkeypatch.setenv(settings.revision_env_var(settings.INSTANTMESH_REPO), sha)
    dino = fake_hub.new_commit(settings.DINO_REPO, {"config.json": dino_config_bytes(cfg), "preprocessor_config.json": preprocessor})
    monkeypatch.setenv(settings.revision_env_var(settings.DINO_REPO), dino)
    return cfg
