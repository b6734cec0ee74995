"""Clean-up of extracted surfaces (model frame): unreferenced and duplicate vertices, degenerate
and duplicate faces, small floating pieces, orientation, signed volume. Each step returns a new
Mesh; per-vertex data (colours, UVs) follows its vertices. ``clean_mesh`` runs them in a
sensible order.
"""

from __future__ import annotations

import numpy as np

from instantmesh_cli.mesh.core import Mesh, _cross, face_areas


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
