"""The texture stage: rasterizers, GTR refinement, UV atlas, bake.

Heavy modules (torch) load on first use of a name below, so importing the package
stays cheap for the CLI's start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instantmesh_cli.texture.stage import DEFAULT_TARGET_FACES, TextureReport, texture_mesh

__all__ = ["texture_mesh", "TextureReport", "DEFAULT_TARGET_FACES"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from instantmesh_cli.texture import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
