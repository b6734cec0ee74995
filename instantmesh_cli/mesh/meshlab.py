"""Surface work with MeshLab (the optional ``meshlab`` extra): isotropic remeshing before the UV
atlas, and repair into a closed surface for 3D printing, with the open-edge count that says
whether a surface is closed. pymeshlab is GPL-3.0 and ~280 MB installed, so it is not a base
dependency; these are its only uses, and it is imported only when one of them runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instantmesh_cli.mesh.cleanup import face_components, orient_outward, remove_degenerate_faces, remove_unreferenced_vertices
from instantmesh_cli.mesh.core import Mesh, face_areas

MESHLAB_INSTALL = "pip install 'instantmesh-cli[meshlab]', which adds pymeshlab: GPL-3.0, about 280 MB"


def meshlab_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pymeshlab") is not None


def _pymeshlab():
    try:
        import pymeshlab
    except ImportError:
        from instantmesh_cli.errors import ImeshError

        raise ImeshError("--remesh and --watertight need pymeshlab, which is not installed",
                         hint=MESHLAB_INSTALL) from None
    return pymeshlab


def _meshset(mesh: Mesh):
    pymeshlab = _pymeshlab()
    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=mesh.vertices.astype(np.float64), face_matrix=mesh.faces.astype(np.int32)))
    return pymeshlab, ms


def _from_meshset(ms, source: Mesh, note: dict[str, object]) -> Mesh:
    """The MeshSet's current mesh as a :class:`Mesh`; colours follow the nearest vertex of ``source``
    (the texture stage queries the colour field again at the new vertices anyway)."""
    out = ms.current_mesh()
    v = np.asarray(out.vertex_matrix(), dtype=np.float32)
    f = np.asarray(out.face_matrix(), dtype=np.int64)
    colors = None
    if source.vertex_colors is not None and len(v):
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(source.vertices).query(v)
        colors = source.vertex_colors[nearest]
    metadata = dict(source.metadata)
    metadata.update(note)
    return Mesh(v, f, colors, None, None, metadata)


def remesh(mesh: Mesh, target_faces: int | None = None, *, iterations: int = 6) -> Mesh:
    """Isotropic remeshing: near-equilateral triangles of one size over the whole surface.

    Marching-cubes-like extraction leaves slivers and a density that follows the grid, not
    the shape; even triangles unwrap into cleaner UV charts, bake with fewer artefacts and
    deform better. The edge length is chosen so that the surface gets about
    ``target_faces`` faces (None: as many as it has); sharp features (> 30°) are kept and
    the result stays within 1 % of the bounding box of the original surface.
    """
    if mesh.is_textured:
        raise ValueError("remesh a mesh before texturing it")
    if mesh.num_faces == 0:
        return mesh
    faces = int(target_faces or mesh.num_faces)
    area = float(face_areas(mesh).sum())
    # An equilateral triangle of edge L covers sqrt(3)/4 L²: L for `faces` triangles over `area`.
    edge = float(np.sqrt(4.0 * area / (np.sqrt(3.0) * faces)))
    pymeshlab, ms = _meshset(mesh)
    absolute = getattr(pymeshlab, "AbsoluteValue", None) or pymeshlab.PureValue
    ms.meshing_isotropic_explicit_remeshing(iterations=iterations, targetlen=absolute(edge), featuredeg=30.0,
                                            checksurfdist=True, maxsurfdist=pymeshlab.PercentageValue(1.0))
    out = _from_meshset(ms, mesh, {"remesh": {"faces_before": mesh.num_faces, "edge_length": edge}})
    out.metadata["remesh"]["faces_after"] = out.num_faces  # type: ignore[index]
    return orient_outward(remove_unreferenced_vertices(remove_degenerate_faces(out)))


def open_edges(mesh: Mesh) -> tuple[int, int]:
    """(boundary edges, non-manifold edges): edges used by one face, and by more than two.
    A closed 2-manifold surface — what a slicer can fill — has neither."""
    if mesh.num_faces == 0:
        return 0, 0
    f = mesh.faces
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges[:, 0] * np.int64(mesh.num_vertices) + edges[:, 1], return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum())


@dataclass(frozen=True)
class RepairReport:
    boundary_edges_before: int
    nonmanifold_edges_before: int
    boundary_edges: int
    nonmanifold_edges: int
    shells: int

    @property
    def closed(self) -> bool:
        return self.boundary_edges == 0 and self.nonmanifold_edges == 0


def make_watertight(mesh: Mesh, *, rounds: int = 3) -> tuple[Mesh, RepairReport]:
    """Repair ``mesh`` into a closed, consistently oriented surface (for 3D printing).

    Welds duplicate vertices, drops degenerate and duplicate faces, removes the faces that
    make edges non-manifold, splits non-manifold vertices, closes every hole (whatever its
    size: a cropped object's cut becomes a cap), orients each shell outward. Removing faces
    can open new holes, so this runs for up to ``rounds`` rounds; the report says whether the
    result is closed.
    """
    if mesh.is_textured:
        raise ValueError("repair a mesh before texturing it")
    boundary0, nonmanifold0 = open_edges(mesh)
    out = mesh
    for _ in range(rounds):
        boundary, nonmanifold = open_edges(out)
        if boundary == 0 and nonmanifold == 0:
            break
        pymeshlab, ms = _meshset(out)
        ms.meshing_remove_duplicate_vertices()
        ms.meshing_remove_duplicate_faces()
        ms.meshing_remove_null_faces()
        ms.meshing_repair_non_manifold_edges(method="Remove Faces")
        ms.meshing_repair_non_manifold_vertices()
        ms.meshing_remove_unreferenced_vertices()
        # Coherent winding first: the caps that close holes take their orientation from the rim.
        ms.meshing_re_orient_faces_coherently()
        # maxholesize counts boundary edges; every boundary edge of the mesh bounds every hole.
        ms.meshing_close_holes(maxholesize=max(int(boundary) + 3, 30), selfintersection=False)
        ms.meshing_re_orient_faces_coherently()
        ms.meshing_remove_unreferenced_vertices()
        # Kept as MeshLab leaves it: a cap may hold zero-area triangles where two holes met at a
        # vertex, and dropping them would reopen exactly that pinch.
        out = _from_meshset(ms, out, {})
    out = orient_outward(out)
    boundary, nonmanifold = open_edges(out)
    shells = int(len(np.unique(face_components(out)))) if out.num_faces else 0
    report = RepairReport(boundary0, nonmanifold0, boundary, nonmanifold, shells)
    out.metadata["watertight"] = {"closed": report.closed, "boundary_edges": boundary,
                                  "nonmanifold_edges": nonmanifold, "shells": shells}
    return out, report
