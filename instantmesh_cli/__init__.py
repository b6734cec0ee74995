"""imesh: photo → textured 3D mesh with Zero123++ v1.2 and InstantMesh.

Importing the package is cheap; the heavy libraries (torch, diffusers, trimesh…)
load only when a stage that needs them runs. The Python API::

    from instantmesh_cli import ImeshPipeline, PipelineOptions
"""

from instantmesh_cli.version import __version__

__all__ = ["GenerateResult", "ImeshPipeline", "PipelineOptions", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `imesh --help` and `import instantmesh_cli` stay fast.
    if name in ("ImeshPipeline", "GenerateResult"):
        from instantmesh_cli import pipeline

        return getattr(pipeline, name)
    if name == "PipelineOptions":
        from instantmesh_cli.chain.options import PipelineOptions

        return PipelineOptions
    raise AttributeError(f"module 'instantmesh_cli' has no attribute {name!r}")
