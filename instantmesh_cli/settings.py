"""Model variants, Hub repositories, pinned revisions and defaults.

Every file the tool may fetch is listed here, so ``imesh download`` can fetch
exactly that set and ``imesh doctor`` can say what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from instantmesh_cli.reconstruction.config import (
    INSTANT_MESH_BASE,
    INSTANT_MESH_LARGE,
    INSTANT_NERF_BASE,
    INSTANT_NERF_LARGE,
    LRMConfig,
)

INSTANTMESH_REPO = "TencentARC/InstantMesh"
ZERO123PLUS_REPO = "sudo-ai/zero123plus-v1.2"


@dataclass(frozen=True)
class ModelVariant:
    """A reconstruction model the user can pick with ``--model``."""

    name: str
    config: LRMConfig
    checkpoint: str  # file name in INSTANTMESH_REPO

    @property
    def uses_flexicubes(self) -> bool:
        return self.config.kind == "mesh"


VARIANTS: dict[str, ModelVariant] = {
    v.name: v
    for v in (
        ModelVariant("instant-mesh-large", INSTANT_MESH_LARGE, "instant_mesh_large.ckpt"),
        ModelVariant("instant-mesh-base", INSTANT_MESH_BASE, "instant_mesh_base.ckpt"),
        ModelVariant("instant-nerf-large", INSTANT_NERF_LARGE, "instant_nerf_large.ckpt"),
        ModelVariant("instant-nerf-base", INSTANT_NERF_BASE, "instant_nerf_base.ckpt"),
    )
}
DEFAULT_VARIANT = "instant-mesh-large"


def get_variant(name: str) -> ModelVariant:
    from instantmesh_cli.errors import UsageError

    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}") from None


# Defaults of the official run (reference/instantmesh.md §5, reference/zero123plus.md §6).
DEFAULT_STEPS = 75
DEFAULT_GUIDANCE = 4.0
DEFAULT_SEED = 42
DEFAULT_FOREGROUND_RATIO = 0.85
DEFAULT_TEXTURE_SIZE = 1024
DEFAULT_REFINE_STEPS = 20
