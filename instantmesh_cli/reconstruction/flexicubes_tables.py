"""Dual-marching-cubes lookup tables for FlexiCubes, derived by our own code.

Nothing here is typed in by hand except the cube geometry (corner and edge
numbering, which the released checkpoints fix).  The per-case surface patches are
computed from the corner signs with one face rule, and everything else follows:

* A cube case is an 8-bit number, bit ``k`` set when corner ``k`` is *inside*
  (SDF < 0).
* Each cube face whose corners change sign carries two (or, on an ambiguous face
  with diagonal signs, four) crossed edges.  Two crossings are joined by one
  segment.  On an ambiguous face the rule is "inside corners stay apart": each
  segment cuts off one inside corner, so the two outside corners are joined
  through the face.  The rule depends only on the face's own corner signs, so the
  two cubes sharing a face always agree.
* The cube's surface patches are the connected components of its crossed edges
  under those segments (no interior tunnels).  Each patch is one dual vertex; its
  edge group is the sorted list of its crossed edges.
* FlexiCubes' ambiguity fix (paper supplement §1.3, cases "C16/C19"): a cube with
  exactly one ambiguous face whose two face segments belong to the *same* patch
  makes a non-manifold dual edge when the neighbour across that face is such a
  cube too.  Both cubes then switch to the complementary case ``255 - case``,
  whose patches are identical except that the one ambiguous face is resolved the
  other way (so the two sides still agree).  ``CHECK`` records, per case, whether
  it is such a cube, the offset to the neighbour across the ambiguous face, and the
  replacement case.

The generated tables were checked to be *identical* (values and order) to the
nv-tlabs tables shipped with InstantMesh (``dmc_table``, ``num_vd_table``,
``check_table``) by running both outside this repository.
"""

from __future__ import annotations

from functools import lru_cache

# Corner k of a cube sits at offset (k & 1, (k >> 1) & 1, (k >> 2) & 1): x varies fastest.
# Fact of the checkpoint: net_weight's alpha outputs (columns 12:20) are per corner in this order.
CORNER_OFFSETS: tuple[tuple[int, int, int], ...] = tuple(
    (k & 1, (k >> 1) & 1, (k >> 2) & 1) for k in range(8)
)

# Fact of the checkpoint: the 12 edges as (first corner, second corner), in the order of
# net_weight's beta outputs (columns 0:12), read from the official FlexiCubes code.
# The endpoint order matters only for which endpoint is "first" when orienting quads:
# x- and z-edges point along +x/+z, y-edges (8..11) point along -y.
EDGE_CORNERS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 5), (4, 5), (0, 4),
    (2, 3), (3, 7), (6, 7), (2, 6),
    (2, 0), (3, 1), (7, 5), (6, 4),
)

MAX_DUAL_VERTICES = 4  # most patches in any case (the 4-corner checkerboards)
MAX_GROUP_EDGES = 7  # most crossed edges in one patch


def edge_axis(edge: int) -> int:
    """Axis (0 = x, 1 = y, 2 = z) along which cube edge ``edge`` runs."""
    a, b = EDGE_CORNERS[edge]
    diff = [CORNER_OFFSETS[a][i] != CORNER_OFFSETS[b][i] for i in range(3)]
    return diff.index(True)


def _faces() -> list[tuple[int, int, tuple[int, ...]]]:
    """The six faces as (axis, side, corners on the face in cyclic order)."""
    faces = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for side in (0, 1):
            ring = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):  # walk around the face
                off = [0, 0, 0]
                off[axis], off[u], off[v] = side, du, dv
                ring.append(CORNER_OFFSETS.index(tuple(off)))
            faces.append((axis, side, tuple(ring)))
    return faces


def _edge_of(a: int, b: int) -> int:
    for e, pair in enumerate(EDGE_CORNERS):
        if set(pair) == {a, b}:
            return e
    raise AssertionError("corners are not adjacent")


def _inside(case: int, corner: int) -> bool:
    return bool((case >> corner) & 1)


def _patches(case: int) -> tuple[list[list[int]], list[tuple[tuple[int, int, int], int, int]]]:
    """Surface patches of ``case`` and its ambiguous faces.

    Returns (patches, ambiguous) where patches is a list of sorted edge lists and ambiguous lists, for every face with
    diagonal signs, (outward face normal, patch of its first segment, patch of its
    second segment).
    """
    crossed = [e for e, (a, b) in enumerate(EDGE_CORNERS) if _inside(case, a) != _inside(case, b)]
    parent = {e: e for e in crossed}

    def find(e: int) -> int:
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    def join(a: int, b: int) -> None:
        parent[find(a)] = find(b)

    face_segments = []
    for axis, side, ring in _faces():
        ring_edges = [_edge_of(ring[i], ring[(i + 1) % 4]) for i in range(4)]
        cut = [e for e in ring_edges if e in parent]
        if len(cut) == 2:
            join(*cut)
        elif len(cut) == 4:
            # Diagonal signs: cut off each inside corner by the segment joining its two
            # face edges (ring edge i runs from ring[i] to ring[i+1]).
            segs = []
            for i, corner in enumerate(ring):
                if _inside(case, corner):
                    e_prev, e_next = ring_edges[(i - 1) % 4], ring_edges[i]
                    join(e_prev, e_next)
                    segs.append(e_prev)
            normal = [0, 0, 0]
            normal[axis] = 1 if side else -1
            face_segments.append((tuple(normal), segs))
    groups: dict[int, list[int]] = {}
    for e in crossed:
        groups.setdefault(find(e), []).append(e)
    # Order only affects the numbering of dual vertices, never the mesh.  We list patches
    # by the smallest corner they touch on the minority side (inside when at most four
    # corners are inside, else outside), then by smallest edge: that reproduces the
    # published table's order exactly, which keeps comparisons with it trivial.
    minority = 1 if bin(case).count("1") <= 4 else 0

    def order(g: list[int]) -> tuple[int, int]:
        touched = [c for e in g for c in EDGE_CORNERS[e] if ((case >> c) & 1) == minority]
        return min(touched), g[0]

    patches = sorted((sorted(g) for g in groups.values()), key=order)
    patch_of = {e: i for i, g in enumerate(patches) for e in g}
    ambiguous = [(n, patch_of[s[0]], patch_of[s[1]]) for n, s in face_segments]
    return patches, ambiguous


@lru_cache(maxsize=1)
def build_tables() -> tuple[
    list[list[list[int]]], list[int], list[list[int]], list[list[int]]
]:
    """Generate the tables.

    Returns (dmc, num_vd, check, edge_to_vd):
      dmc        [256][4][7] edge groups per dual vertex, padded with -1
      num_vd     [256] number of dual vertices per case
      check      [256][5] (is C16/C19-type, dx, dy, dz of the neighbour, replacement case)
      edge_to_vd [256][12] dual vertex (0..3) that owns each edge, -1 where not crossed
    """
    dmc, num_vd, check, edge_to_vd = [], [], [], []
    for case in range(256):
        patches, ambiguous = _patches(case)
        assert len(patches) <= MAX_DUAL_VERTICES and all(len(p) <= MAX_GROUP_EDGES for p in patches)
        rows = [p + [-1] * (MAX_GROUP_EDGES - len(p)) for p in patches]
        rows += [[-1] * MAX_GROUP_EDGES] * (MAX_DUAL_VERTICES - len(rows))
        dmc.append(rows)
        num_vd.append(len(patches))
        owner = [-1] * 12
        for i, p in enumerate(patches):
            for e in p:
                owner[e] = i
        edge_to_vd.append(owner)
        if len(ambiguous) == 1 and ambiguous[0][1] == ambiguous[0][2]:
            (dx, dy, dz), _, _ = ambiguous[0]
            check.append([1, dx, dy, dz, 255 - case])
        else:
            check.append([0, 0, 0, 0, 0])
    return dmc, num_vd, check, edge_to_vd
