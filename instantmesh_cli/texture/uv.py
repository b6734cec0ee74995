"""UV atlases: a fast box-projection unwrap (default) and xatlas (optional).

Why box projection is the default (measured on quadric-decimated marching-cubes
blobs, smooth and noisy; numbers in the texture issue's report): xatlas 0.0.11 is
single-threaded and super-linear in faces. With default options it took 0.25 s at 5k
faces, 0.72 s at 10k, 2.0 s at 20k, 8.1 s at 40k on the 2-core dev machine; capping the
chart area (``max_chart_area``) was the one option that helped, but its cost still
depends on how noisy the surface is: 40k faces took 0.68 s (smooth) and 1.55 s (noisy)
on the GPU host's Xeon. The box unwrap below is vectorised numpy whose cost is linear
in faces and shape-independent (0.044 s at 40k there), which keeps UV + bake + export
inside the one-second budget for every mesh. xatlas stays available
(``uv_method="xatlas"``) for fewer, rounder charts when time matters less.

Box projection (after SF3D, reference/peers.md §4.1, written from the description):
every face goes to the cube side (±x, ±y, ±z) its normal points to most; a few
rounds of majority voting among edge neighbours remove speckle on noisy surfaces;
connected runs of faces on the same side form charts, each projected orthographically
onto its side's plane (all of a chart's normals lie within 75 degrees of the side's
axis, so no triangle flips); charts are turned to lie flat, sorted by height and
packed on shelves at one common texel density, with ``padding`` texels of gutter
round each chart so that bilinear filtering and mip-maps do not mix charts.

UVs use the Mesh convention: origin at the texture's bottom-left.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

UV_METHODS = ("box", "xatlas")
DEFAULT_UV_METHOD = "box"

# Side axes of the box projection, and for each the in-plane (u, v) axes chosen so
# that u x v = side normal (charts are never mirrored); sides are upright (v = +z) where possible.
_SIDES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
_U_AXES = np.array([[0, 1, 0], [0, -1, 0], [-1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], dtype=np.float64)
_V_AXES = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 0], [0, -1, 0]], dtype=np.float64)
_MAX_TILT_COS = math.cos(math.radians(75.0))


@dataclass
class UVAtlas:
    """A UV layout of a mesh: vertices split along seams.

    ``vertex_ids`` (M,): the original vertex of each UV vertex; ``uv`` (M, 2) in
    [0, 1], origin bottom-left; ``faces`` (F, 3) into the UV vertices, same face
    order as the input; ``charts``: number of charts; ``seconds``: unwrap time.
    """

    vertex_ids: np.ndarray
    uv: np.ndarray
    faces: np.ndarray
    method: str
    charts: int
    seconds: float = 0.0
    utilization: float = 0.0


def default_padding(texture_size: int) -> int:
    """Gutter (texels) round each chart: 2 at 1024, at least 1."""
    return max(1, int(round(2 * texture_size / 1024)))


def unwrap(
    vertices: np.ndarray,
    faces: np.ndarray,
    method: str = DEFAULT_UV_METHOD,
    *,
    texture_size: int = 1024,
    padding: int | None = None,
) -> UVAtlas:
    """Unwrap a triangle mesh (vertices (N, 3), faces (F, 3)) with ``method`` ("box" | "xatlas")."""
    from instantmesh_cli.errors import UsageError

    if method not in UV_METHODS:
        raise UsageError(f"unknown UV method {method!r}; choose one of: {', '.join(UV_METHODS)}")
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    pad = default_padding(texture_size) if padding is None else int(padding)
    t0 = time.perf_counter()
    if len(faces) == 0:
        atlas = UVAtlas(np.zeros(0, np.int64), np.zeros((0, 2), np.float32), faces, method, 0)
    elif method == "xatlas":
        atlas = _xatlas_unwrap(vertices, faces, texture_size, pad)
    else:
        atlas = None
        # Very many tiny charts may not fit with full gutters: narrow them before giving up.
        for p in sorted({pad, min(pad, 1), 0}, reverse=True):
            try:
                atlas = box_unwrap(vertices, faces, texture_size=texture_size, padding=p)
                break
            except ValueError:
                continue
        if atlas is None:
            raise UsageError(
                f"{len(faces)} faces do not fit a {texture_size}x{texture_size} texture atlas",
                hint="use a larger --texture-size or a smaller --target-faces",
            )
    atlas.seconds = time.perf_counter() - t0
    return atlas


# --------------------------------------------------------------------------------------- box


def face_adjacency(faces: np.ndarray) -> np.ndarray:
    """(K, 2) pairs of faces sharing an edge (non-manifold edges chain their faces)."""
    n = int(faces.max()) + 1
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    owner = np.tile(np.arange(len(faces)), 3)
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    same = key[1:] == key[:-1]
    return np.stack([owner[:-1][same], owner[1:][same]], axis=1)


def _assign_sides(normals: np.ndarray, pairs: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Cube side per face: the best-aligned axis, then majority votes of neighbours."""
    dots = normals @ _SIDES.T  # (F, 6), normals not normalised: only signs/ratios matter
    side = np.argmax(dots, axis=1)
    length = np.linalg.norm(normals, axis=1)
    allowed = dots > _MAX_TILT_COS * length[:, None]  # sides a face may take without flipping
    f = len(normals)
    for _ in range(rounds):
        votes = np.zeros((f, 6), dtype=np.int32)
        np.add.at(votes, (pairs[:, 0], side[pairs[:, 1]]), 1)
        np.add.at(votes, (pairs[:, 1], side[pairs[:, 0]]), 1)
        votes[~allowed] = 0
        best = np.argmax(votes, axis=1)
        change = (votes[np.arange(f), best] >= 2) & (best != side)
        if not change.any():
            break
        side = np.where(change, best, side)
    return side


def _shelf_pack(w: np.ndarray, h: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Place boxes (integer sizes, sorted by height descending) on shelves of ``width``.

    Returns (x, y, used height) or None if a box is wider than the atlas.
    """
    if len(w) and int(w.max()) > width:
        return None
    x = np.zeros(len(w), dtype=np.int64)
    y = np.zeros(len(w), dtype=np.int64)
    start, top = 0, 0
    while start < len(w):
        cum = np.cumsum(w[start:])
        count = max(int(np.searchsorted(cum, width, side="right")), 1)
        x[start : start + count] = cum[:count] - w[start : start + count]
        y[start : start + count] = top
        top += int(h[start])
        start += count
    return x, y, top


def box_unwrap(vertices: np.ndarray, faces: np.ndarray, *, texture_size: int = 1024, padding: int = 2) -> UVAtlas:
    """Box-projection charts packed into a square atlas of ``texture_size`` texels (see module doc)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = len(faces)
    tri = vertices[faces]  # (F, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    pairs = face_adjacency(faces)
    side = _assign_sides(normals, pairs)
    # Charts: connected faces on the same side.
    same = side[pairs[:, 0]] == side[pairs[:, 1]]
    p = pairs[same]
    graph = coo_matrix((np.ones(len(p), dtype=np.int8), (p[:, 0], p[:, 1])), shape=(f, f))
    n_charts, chart = connected_components(graph, directed=False)
    # Project every corner onto its face's side plane.
    u_ax, v_ax = _U_AXES[side], _V_AXES[side]  # (F, 3)
    cu = np.einsum("fkc,fc->fk", tri, u_ax)  # (F, 3)
    cv = np.einsum("fkc,fc->fk", tri, v_ax)
    # Per-chart bounding boxes.
    corner_chart = np.repeat(chart, 3)
    order = np.argsort(corner_chart, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(corner_chart[order]) != 0])
    fu, fv = cu.reshape(-1)[order], cv.reshape(-1)[order]
    umin, umax = np.minimum.reduceat(fu, starts), np.maximum.reduceat(fu, starts)
    vmin, vmax = np.minimum.reduceat(fv, starts), np.maximum.reduceat(fv, starts)
    cw, ch = umax - umin, vmax - vmin
    # Lay charts flat (width >= height) by a quarter turn, which keeps orientation.
    turn = ch > cw
    lu = cu - umin[chart][:, None]
    lv = cv - vmin[chart][:, None]
    tf = turn[chart]
    lu, lv = np.where(tf[:, None], ch[chart][:, None] - lv, lu), np.where(tf[:, None], lu, lv)
    cw, ch = np.where(turn, ch, cw), np.where(turn, cw, ch)
    # One texel density for all charts: the largest that packs into the atlas.
    size = int(texture_size)
    order_h = np.argsort(-ch, kind="stable")
    area = float((cw * ch).sum())
    pad2 = 2 * padding

    def pack(scale: float):
        bw = np.ceil(cw[order_h] * scale).astype(np.int64) + pad2 + 1
        bh = np.ceil(ch[order_h] * scale).astype(np.int64) + pad2 + 1
        placed = _shelf_pack(bw, bh, size)
        if placed is None or placed[2] > size:
            return None
        return placed

    hi = math.sqrt(size * size / max(area, 1e-30))  # all texels used, no gutters: an upper bound
    lo = 0.0
    best = None
    for _ in range(24):
        mid = 0.5 * (lo + hi) if lo > 0 else hi * 0.5
        placed = pack(mid)
        if placed is None:
            hi = mid
        else:
            lo, best = mid, placed
        if lo > 0 and hi - lo < 0.005 * lo:
            break
    if best is None:  # even a tiny scale fails: more charts than gutters fit; shrink the gutter
        raise ValueError(f"{n_charts} charts do not fit a {size}x{size} atlas with {padding}-texel gutters")
    scale = lo
    ox = np.empty(n_charts, dtype=np.float64)
    oy = np.empty(n_charts, dtype=np.float64)
    ox[order_h], oy[order_h] = best[0] + padding + 0.5, best[1] + padding + 0.5
    u = (lu * scale + ox[chart][:, None]) / size
    v = (lv * scale + oy[chart][:, None]) / size
    # One UV vertex per (vertex, chart).
    key = chart[:, None].astype(np.int64) * (int(faces.max()) + 1) + faces
    uniq, first, inverse = np.unique(key.reshape(-1), return_index=True, return_inverse=True)
    uv = np.stack([u.reshape(-1)[first], v.reshape(-1)[first]], axis=1).astype(np.float32)
    vertex_ids = faces.reshape(-1)[first]
    util = float((cw * ch).sum() * scale * scale / (size * size))
    return UVAtlas(vertex_ids, np.clip(uv, 0.0, 1.0), inverse.reshape(-1, 3).astype(np.int64), "box", int(n_charts),
                   utilization=util)


# --------------------------------------------------------------------------------------- xatlas

# Chart area cap as a fraction of the surface area: the one xatlas option that changed its
# time (20k faces: 2.0 s → 0.33 s smooth / 0.6-0.9 s noisy on the 2-core machine), by
# stopping chart growth early. bruteForce packing stays off (xatlas's default).
XATLAS_CHART_AREA_FRACTION = 0.005


def _xatlas_unwrap(vertices: np.ndarray, faces: np.ndarray, texture_size: int, padding: int) -> UVAtlas:
    try:
        import xatlas
    except ImportError as exc:  # pragma: no cover - xatlas is a dependency
        from instantmesh_cli.errors import UsageError

        raise UsageError("the xatlas UV method needs the xatlas package", hint="pip install xatlas or use --uv box") from exc
    tri = vertices[faces]
    surface = 0.5 * float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
    chart_opts = xatlas.ChartOptions()
    chart_opts.max_chart_area = XATLAS_CHART_AREA_FRACTION * surface
    pack_opts = xatlas.PackOptions()
    pack_opts.resolution = int(texture_size)
    pack_opts.padding = int(padding)
    pack_opts.bilinear = True
    pack_opts.bruteForce = False
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
    atlas.generate(chart_opts, pack_opts)
    vmapping, indices, uvs = atlas.get_mesh(0)
    return UVAtlas(
        np.asarray(vmapping, dtype=np.int64), np.clip(np.asarray(uvs, dtype=np.float32), 0.0, 1.0),
        np.asarray(indices, dtype=np.int64), "xatlas", int(atlas.chart_count), utilization=float(atlas.utilization),
    )
