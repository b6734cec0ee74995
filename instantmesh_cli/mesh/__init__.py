"""The :class:`Mesh` value passed between stages (model frame) and the operations on it, one job
per module: ``core`` (the :class:`Mesh` dataclass, face areas), ``cleanup`` (welding, degenerate
and duplicate faces, small pieces, orientation, ``clean_mesh``), ``decimate`` (fewer faces before
UV unwrapping) and ``meshlab`` (remeshing and watertight repair through the optional pymeshlab,
imported only when they run). Every public name is importable from here as well.
"""

from __future__ import annotations

from instantmesh_cli.mesh.cleanup import (
    clean_mesh,
    face_components,
    merge_duplicate_vertices,
    orient_outward,
    remove_degenerate_faces,
    remove_duplicate_faces,
    remove_small_components,
    remove_unreferenced_vertices,
    signed_volume,
)
from instantmesh_cli.mesh.core import Mesh, face_areas
from instantmesh_cli.mesh.decimate import decimate
from instantmesh_cli.mesh.meshlab import MESHLAB_INSTALL, RepairReport, make_watertight, meshlab_available, open_edges, remesh

__all__ = [
    "MESHLAB_INSTALL",
    "Mesh",
    "RepairReport",
    "clean_mesh",
    "decimate",
    "face_areas",
    "face_components",
    "make_watertight",
    "merge_duplicate_vertices",
    "meshlab_available",
    "open_edges",
    "orient_outward",
    "remesh",
    "remove_degenerate_faces",
    "remove_duplicate_faces",
    "remove_small_components",
    "remove_unreferenced_vertices",
    "signed_volume",
]
