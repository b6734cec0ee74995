"""The :class:`Mesh` value passed between stages, in the model frame.

Model frame (InstantMesh's): right-handed, +z up, the input photo seen from
azimuth 0, i.e. from the +x axis, with image-right = +y. Only
:mod:`instantmesh_cli.export` converts to the exported (glTF) frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh with either vertex colours or a UV-mapped texture.

    - ``vertices``: float32 (N, 3), model frame.
    - ``faces``: int64 (F, 3), counter-clockwise when seen from outside.
    - ``vertex_colors``: float32 (N, 3) in [0, 1], or None.
    - ``uv``: float32 (N, 2) per vertex, origin at the texture's bottom-left
      (OpenGL/OBJ convention); vertices are split along UV seams.
    - ``texture``: uint8 (H, W, 3) image, row 0 at the top (as stored in PNG), so
      texel row ``r`` covers ``v = 1 - (r + 0.5) / H``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    metadata: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.vertex_colors is not None:
            self.vertex_colors = np.ascontiguousarray(self.vertex_colors, dtype=np.float32).reshape(-1, 3)
            if len(self.vertex_colors) != len(self.vertices):
                raise ValueError("vertex_colors must have one row per vertex")
        if self.uv is not None:
            self.uv = np.ascontiguousarray(self.uv, dtype=np.float32).reshape(-1, 2)
            if len(self.uv) != len(self.vertices):
                raise ValueError("uv must have one row per vertex")
        if (self.uv is None) != (self.texture is None):
            raise ValueError("uv and texture come together")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("face index out of range")

    @property
    def num_vertices(self) -> int:
        return int(len(self.vertices))

    @property
    def num_faces(self) -> int:
        return int(len(self.faces))

    @property
    def is_textured(self) -> bool:
        return self.texture is not None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


# ---------------------------------------------------------------------------------------------
# Clean-up of extracted surfaces (model frame). Each step returns a new Mesh; per-vertex data
# (colours, UVs) follows its vertices. ``clean_mesh`` runs them in a sensible order.


def _with(mesh: Mesh, vertex_ids: np.ndarray | None, faces: np.ndarray, note: dict[str, object] | None = None) -> Mesh:
    """A copy of ``mesh`` keeping the vertices ``vertex_ids`` (None: all) and the given faces (old indices)."""
    metadata = dict(mesh.metadata)
    if note:
        metadata.setdefault("cleanup", {})
        metadata["cleanup"] = {**metadata["cleanup"], **note}  # type: ignore[dict-item]
    if vertex_ids is None:
        return Mesh(mesh.vertices, faces, mesh.vertex_colors, mesh.uv, mesh.texture, metadata)
    remap = np.full(len(mesh.vertices), -1, dtype=np.int64)
    remap[vertex_ids] = np.arange(len(vertex_ids))
    pick = lambda a: None if a is None else a[vertex_ids]  # noqa: E731
    return Mesh(mesh.vertices[vertex_ids], remap[faces], pick(mesh.vertex_colors), pick(mesh.uv), mesh.texture, metadata)


def remove_unreferenced_vertices(mesh: Mesh) -> Mesh:
    used = np.flatnonzero(np.bincount(mesh.faces.reshape(-1), minlength=len(mesh.vertices)))
    if len(used) == len(mesh.vertices):
        return mesh
    return _with(mesh, used, mesh.faces)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # np.cross is several times slower than this on (N, 3) arrays
    return np.stack(
        [a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2], a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]],
        axis=1,
    )


def face_areas(mesh: Mesh) -> np.ndarray:
    v = mesh.vertices.astype(np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    return 0.5 * np.sqrt((_cross(b - a, c - a) ** 2).sum(axis=1))


def _row_keys(rows: np.ndarray, bound: int) -> np.ndarray | None:
    """One int64 per row of non-negative ints < ``bound`` (None if they do not fit in 63 bits)."""
    bits = max(int(bound - 1).bit_length(), 1)
    if bits * rows.shape[1] > 63:
        return None
    key = np.zeros(len(rows), dtype=np.int64)
    for col in range(rows.shape[1]):
        key = (key << bits) | rows[:, col].astype(np.int64)
    return key


def _unique_rows(rows: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first occurrence of each distinct row, inverse) like np.unique(axis=0), faster."""
    key = _row_keys(rows, bound)
    if key is not None:
        # The usual case has no duplicates: a plain sort says so much faster than np.unique's stable argsort.
        ordered = np.sort(key)
        if not bool((ordered[1:] == ordered[:-1]).any()):
            identity = np.arange(len(rows))
            return identity, identity
    if key is None:
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        return first, inverse.reshape(-1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def merge_duplicate_vertices(mesh: Mesh, tolerance: float | None = None) -> Mesh:
    """Weld vertices closer than ``tolerance`` (default 1e-6 of the bounding-box diagonal).

    Only exact-in-practice duplicates are merged, never nearby vertices of different
    surface sheets. Vertices with different UVs stay apart (UV seams); merged colours
    are averaged.
    """
    n = len(mesh.vertices)
    if n == 0:
        return mesh
    lo, hi = mesh.bounds()
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    tol = tolerance if tolerance is not None else 1e-6 * diag
    key = np.round((mesh.vertices.astype(np.float64) - lo) / tol).astype(np.int64)
    if mesh.uv is not None:
        key = np.concatenate([key, np.round(mesh.uv.astype(np.float64) * 1e6).astype(np.int64)], axis=1)
    key -= key.min(axis=0)
    first, inverse = _unique_rows(key, int(key.max()) + 1)
    if len(first) == n:
        return mesh
    colors = None
    if mesh.vertex_colors is not None:
        sums = np.zeros((len(first), 3))
        np.add.at(sums, inverse, mesh.vertex_colors)
        colors = (sums / np.bincount(inverse, minlength=len(first))[:, None]).astype(np.float32)
    uv = None if mesh.uv is None else mesh.uv[first]
    metadata = dict(mesh.metadata)
    metadata["cleanup"] = {**metadata.get("cleanup", {}), "merged_vertices": int(n - len(first))}  # type: ignore[dict-item]
    return Mesh(mesh.vertices[first], inverse[mesh.faces], colors, uv, mesh.texture, metadata)


def remove_degenerate_faces(mesh: Mesh, area_epsilon: float | None = None) -> Mesh:
    """Drop faces that repeat a vertex or have (numerically) zero area."""
    f = mesh.faces
    if len(f) == 0:
        return mesh
    lo, hi = mesh.bounds()
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    eps = area_epsilon if area_epsilon is not None else 1e-14 * diag * diag
    bad = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2]) | (face_areas(mesh) <= eps)
    if not bad.any():
        return mesh
    return _with(mesh, None, f[~bad], {"degenerate_faces": int(bad.sum())})


def remove_duplicate_faces(mesh: Mesh) -> Mesh:
    """Keep one face of each set of faces over the same three vertices (either winding)."""
    if len(mesh.faces) == 0:
        return mesh
    first, _ = _unique_rows(np.sort(mesh.faces, axis=1), len(mesh.vertices))
    if len(first) == len(mesh.faces):
        return mesh
    keep = np.sort(first)
    return _with(mesh, None, mesh.faces[keep], {"duplicate_faces": int(len(mesh.faces) - len(keep))})


def face_components(mesh: Mesh) -> np.ndarray:
    """(F,) label of the connected component (faces sharing vertices) of each face."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = mesh.faces
    n = len(mesh.vertices)
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels[f[:, 0]]


def remove_small_components(mesh: Mesh, min_ratio: float = 0.02, by: str = "area") -> Mesh:
    """Drop connected pieces smaller than ``min_ratio`` of the largest (by ``"area"`` or ``"faces"``)."""
    if len(mesh.faces) == 0:
        return mesh
    if by not in ("area", "faces"):
        raise ValueError(f"by must be 'area' or 'faces', not {by!r}")
    labels = face_components(mesh)  # labels of vertex components: some may have no faces
    count = np.bincount(labels)
    size = np.bincount(labels, weights=face_areas(mesh)) if by == "area" else count.astype(np.float64)
    keep_component = (size >= min_ratio * size.max()) | (count == 0)
    keep_component[np.argmax(size)] = True
    if keep_component.all():
        return mesh
    kept = keep_component[labels]
    out = _with(mesh, None, mesh.faces[kept], {"removed_components": int((~keep_component).sum())})
    return remove_unreferenced_vertices(out)


def _winding_consistent(faces: np.ndarray) -> bool:
    """True if no directed edge appears twice (neighbouring faces traverse shared edges oppositely)."""
    if len(faces) == 0:
        return True
    n = int(faces.max()) + 1
    directed = np.sort(np.concatenate([faces[:, 0] * n + faces[:, 1], faces[:, 1] * n + faces[:, 2], faces[:, 2] * n + faces[:, 0]]))
    return not bool((directed[1:] == directed[:-1]).any())


def orient_outward(mesh: Mesh) -> Mesh:
    """Make the winding consistent within each piece and each piece's normals point outward.

    FlexiCubes and our marching cubes already produce consistent, outward faces; this
    verifies it and repairs other input. A piece points outward when its signed volume
    (about its own centroid) is positive.
    """
    f = mesh.faces.copy()
    if len(f) == 0:
        return mesh
    note: dict[str, object] = {}
    if not _winding_consistent(f):
        import trimesh

        tm = trimesh.Trimesh(mesh.vertices, f, process=False)
        trimesh.repair.fix_winding(tm)
        f = np.asarray(tm.faces, dtype=np.int64)
        note["fixed_winding"] = True
    labels = face_components(Mesh(mesh.vertices, f))
    k = int(labels.max()) + 1
    v = mesh.vertices.astype(np.float64)
    a, b, d = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    # Signed volume about the piece's centroid c, for every piece at once:
    # det(a-c, b-c, d-c) = det(a, b, d) - c . (a x b + b x d + d x a)
    det = (a * _cross(b, d)).sum(axis=1)
    normal = _cross(a, b) + _cross(b, d) + _cross(d, a)
    count = np.bincount(labels, minlength=k).astype(np.float64)
    corner_sum = a + b + d
    centroid = np.stack([np.bincount(labels, corner_sum[:, i], minlength=k) for i in range(3)], axis=1)
    centroid /= 3 * np.maximum(count, 1)[:, None]
    sum_normal = np.stack([np.bincount(labels, normal[:, i], minlength=k) for i in range(3)], axis=1)
    volume = np.bincount(labels, det, minlength=k) - (centroid * sum_normal).sum(axis=1)
    flip = volume < 0
    flipped = int(flip.sum())
    if flipped:
        sel = flip[labels]
        f[sel] = f[sel][:, ::-1]
    if flipped:
        note["flipped_components"] = flipped
    if not note:
        return mesh
    return _with(mesh, None, f, note)


def signed_volume(mesh: Mesh) -> float:
    """Signed volume (positive for a closed mesh with outward faces)."""
    tri = mesh.vertices.astype(np.float64)[mesh.faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def clean_mesh(mesh: Mesh, *, min_component_ratio: float = 0.02, component_measure: str = "area") -> Mesh:
    """Weld duplicate vertices, drop degenerate and duplicate faces and small floating pieces,
    orient every piece outward, drop unused vertices. ``min_component_ratio=0`` keeps all pieces."""
    mesh = merge_duplicate_vertices(mesh)
    mesh = remove_degenerate_faces(mesh)
    mesh = remove_duplicate_faces(mesh)
    if min_component_ratio > 0:
        mesh = remove_small_components(mesh, min_component_ratio, component_measure)
    mesh = orient_outward(mesh)
    return remove_unreferenced_vertices(mesh)


# ---------------------------------------------------------------------------------------------
# Decimation (texture helper): fewer faces before UV unwrapping, whose cost grows with faces.


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


# ---------------------------------------------------------------------------------------------
# Surface work with MeshLab (the optional ``meshlab`` extra): isotropic remeshing before the UV
# atlas, and repair into a closed surface for 3D printing. pymeshlab is GPL-3.0 and ~280 MB
# installed, so it is not a base dependency; these are its only uses.

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
