"""imesh: photo → textured 3D mesh with Zero123++ v1.2 and InstantMesh.

Importing the package is cheap; the heavy libraries (torch, diffusers, trimesh…)
load only when a stage that needs them runs.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
