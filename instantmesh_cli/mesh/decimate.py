"""Decimation (texture helper): fewer faces before UV unwrapping, whose cost grows with faces.
fast-simplification does the work; it is imported when a mesh is decimated, not before.
"""

from __future__ import annotations

import numpy as np

from instantmesh_cli.mesh.cleanup import remove_degenerate_faces, remove_unreferenced_vertices
from instantmesh_cli.mesh.core import Mesh


def _decimate_fast_simplification(vertices: np.ndarray, faces: np.ndarray, target: int):
    from fast_simplification import simplify  # what trimesh.simplify_quadric_decimation wraps

    v, f = simplify(points=vertices.astype(np.float64), triangles=faces.astype(np.int64), target_count=target)
    return np.asarray(v), np.asarray(f)


def decimate(mesh: Mesh, target_faces: int) -> Mesh:
    """Quadric edge-collapse decimation to about ``target_faces`` faces (no-op when already below).

    fast-simplification (12x faster than pymeshlab here, reference/deps.md §2f) does the
    work. Vertex colours follow the nearest original vertex; a textured mesh is refused
    (its UVs would not survive).
    """
    if target_faces < 4:
        raise ValueError(f"target_faces must be at least 4, got {target_faces}")
    if mesh.num_faces <= target_faces:
        return mesh
    if mesh.is_textured:
        raise ValueError("decimate a mesh before texturing it")
    v, f = _decimate_fast_simplification(mesh.vertices, mesh.faces, int(target_faces))
    backend = "fast-simplification"
    colors = None
    if mesh.vertex_colors is not None and len(v):
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(mesh.vertices).query(v)
        colors = mesh.vertex_colors[nearest]
    metadata = dict(mesh.metadata)
    metadata["decimation"] = {"backend": backend, "faces_before": mesh.num_faces, "faces_after": int(len(f))}
    out = Mesh(v.astype(np.float32), f.astype(np.int64), colors, None, None, metadata)
    return remove_unreferenced_vertices(remove_degenerate_faces(out))
