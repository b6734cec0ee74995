"""FlexiCubes mesh extraction (inference path), written from the paper.

Shen et al. 2023, "Flexible Isosurface Extraction for Gradient-Based Mesh
Optimization": a dual-marching-cubes surface whose vertices are placed with
learned per-cube weights.  For a grid of SDF values (negative = inside):

* surface cubes are those with 1..7 inside corners; their case is the 8-bit
  inside mask (corner k → bit k), with the C16/C19 ambiguity fix of
  :mod:`flexicubes_tables`;
* on each crossed cube edge the zero crossing is interpolated with the SDF values
  scaled by the cube's corner weights alpha;
* each surface patch of a cube gives one dual vertex, the beta-weighted mean of
  the crossings of its edges (edge groups from the generated DMC table);
* every crossed grid edge with four cubes around it gives one quad of their dual
  vertices, wound so its normal points to positive SDF (outward), and split along
  the diagonal whose two cubes have the larger gamma product.

Only the inference quad split is implemented (no training losses, no
tetrahedral output).  Raw weights (21 per cube: 12 beta by edge, 8 alpha by
corner, 1 gamma) are normalised as in InstantMesh (weight scale 0.5):
beta, alpha = tanh(w)·0.5 + 1 and gamma = sigmoid(w)·0.5 + 0.25.

Unlike the official implementation, which evaluates the weight head on all
res³ cubes, :func:`extract` asks ``weight_fn`` only for the surface cubes; the
mesh is the same because weights of other cubes are never read.
Everything is vectorised torch on the input device; the grid connectivity is
computed arithmetically instead of with ``torch.unique``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable

import torch

from instantmesh_cli.reconstruction.flexicubes_tables import (
    CORNER_OFFSETS,
    EDGE_CORNERS,
    MAX_DUAL_VERTICES,
    build_tables,
    edge_axis,
)

WEIGHT_SCALE = 0.5  # FlexiCubes(weight_scale=0.5) in InstantMesh's FlexiCubesGeometry
N_WEIGHTS = 21  # 12 beta (per edge) + 8 alpha (per corner) + 1 gamma (per cube)

WeightFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FlexiCubesGrid:
    """The regular grid InstantMesh runs FlexiCubes on.

    Vertices: (res+1)³ points, index ``ix·(res+1)² + iy·(res+1) + iz`` (the order of the
    official lexicographically de-duplicated list), coordinate ``(round(i/res, 5) − 0.5)·scale``
    per axis.  Cubes: res³, index ``cx·res² + cy·res + cz``; corner k of a cube is the vertex
    at offset ``CORNER_OFFSETS[k]`` from its lowest corner.  Nothing of size res³×8 is stored:
    corner indices are computed for the cubes asked for.
    """

    def __init__(self, res: int = 128, scale: float = 2.1, device: torch.device | str = "cpu"):
        if res < 2:
            raise ValueError(f"FlexiCubes grid resolution must be at least 2, got {res}")
        self.res = int(res)
        self.scale = float(scale)
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # tensors always report an index
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.side = self.res + 1
        s = self.side
        # Vertex-index offset of each cube corner from the cube's lowest corner.
        self._corner_offsets = torch.tensor(
            [dx * s * s + dy * s + dz for dx, dy, dz in CORNER_OFFSETS], dtype=torch.long, device=self.device
        )

    @property
    def n_vertices(self) -> int:
        return self.side**3

    @property
    def n_cubes(self) -> int:
        return self.res**3

    @cached_property
    def axis_values(self) -> torch.Tensor:
        """(res+1,) float32 coordinate of each grid plane, rounded exactly like the official grid."""
        i = torch.arange(self.side, dtype=torch.float32, device=self.device)
        rounded = torch.round(i / self.res * 10**5) / 10**5  # float32, as in construct_voxel_grid
        return (rounded - 0.5) * self.scale

    @cached_property
    def vertices(self) -> torch.Tensor:
        """(V, 3) float32 undeformed vertex positions (x-major order)."""
        a = self.axis_values
        gx, gy, gz = torch.meshgrid(a, a, a, indexing="ij")
        return torch.stack([gx, gy, gz], dim=-1).reshape(-1, 3)

    @property
    def center_vertex_index(self) -> int:
        """Vertex InstantMesh forces inside when a prediction is empty (§4.7 step 4)."""
        c = self.res // 2 + 1
        return c * self.side * self.side + c * self.side + c

    def boundary_vertex_mask(self) -> torch.Tensor:
        """(V,) bool: vertices in the first or last two slices along any axis (forced outside by
        InstantMesh's empty-shape fallback)."""
        m = torch.zeros((self.side,) * 3, dtype=torch.bool, device=self.device)
        m[:2] = m[-2:] = True
        m[:, :2] = m[:, -2:] = True
        m[:, :, :2] = m[:, :, -2:] = True
        return m.reshape(-1)

    def cube_corners(self, cube_ids: torch.Tensor) -> torch.Tensor:
        """(S,) cube indices → (S, 8) vertex indices of their corners, in corner order."""
        r, s = self.res, self.side
        cube_ids = cube_ids.to(device=self.device, dtype=torch.long)
        cx, rem = cube_ids // (r * r), cube_ids % (r * r)
        cy, cz = rem // r, rem % r
        base = cx * (s * s) + cy * s + cz
        return base[:, None] + self._corner_offsets

    def all_cube_corners(self) -> torch.Tensor:
        """(res³, 8) corner indices of every cube (the official ``indices``; large at res 128)."""
        return self.cube_corners(torch.arange(self.n_cubes, device=self.device))

    def occupancy(self, sdf: torch.Tensor) -> torch.Tensor:
        """(res+1, res+1, res+1) bool, True where the SDF is negative (inside)."""
        self._check_sdf(sdf)
        return sdf.reshape(self.side, self.side, self.side) < 0

    def case_grid(self, occupancy: torch.Tensor) -> torch.Tensor:
        """(res, res, res) uint8 marching-cubes case of every cube (bit k = corner k inside)."""
        r = self.res
        case = torch.zeros((r, r, r), dtype=torch.uint8, device=occupancy.device)
        occ = occupancy.to(torch.uint8)
        for k, (dx, dy, dz) in enumerate(CORNER_OFFSETS):
            case |= occ[dx : dx + r, dy : dy + r, dz : dz + r] << k
        return case

    def surface_cubes(self, sdf: torch.Tensor) -> torch.Tensor:
        """(S,) ascending indices of the cubes the surface crosses (1..7 inside corners)."""
        case = self.case_grid(self.occupancy(sdf)).reshape(-1)
        return torch.nonzero((case != 0) & (case != 255)).squeeze(1)

    def _check_sdf(self, sdf: torch.Tensor) -> None:
        if sdf.numel() != self.n_vertices:
            raise ValueError(
                f"SDF has {sdf.numel()} values; a FlexiCubes grid of resolution {self.res} has {self.n_vertices}"
            )


class _Tables:
    """The generated tables as tensors on one device, plus the per-axis quad layout."""

    def __init__(self, device: torch.device):
        dmc, num_vd, check, edge_to_vd = build_tables()
        del dmc  # the edge → dual-vertex map carries the same information in gatherable form
        t = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
        self.num_vd = t(num_vd)  # (256,)
        self.edge_to_vd = t(edge_to_vd)  # (256, 12)
        check_t = t(check)
        self.check_flag = check_t[:, 0] == 1  # (256,)
        self.check_offset = check_t[:, 1:4]  # (256, 3)
        self.check_case = check_t[:, 4]  # (256,)
        self.edge_a = t([a for a, _ in EDGE_CORNERS])  # (12,) first corner of each edge
        self.edge_b = t([b for _, b in EDGE_CORNERS])  # (12,) second corner

        # Quads.  A grid edge along axis a has four cubes around it; with (u, v) the other two
        # axes (u < v) and the edge at (u, v) = (q+1, r+1), the cubes sit at (q+du, r+dv) for
        # (du, dv) = (0,0), (0,1), (1,0), (1,1) — ascending cube index.  In the cube at (du, dv)
        # the grid edge is the local edge along a at local (u, v) = (1-du, 1-dv).
        local_edge = []
        first_end = []
        for a in range(3):
            u, v = [x for x in range(3) if x != a]
            row = []
            for du, dv in ((0, 0), (0, 1), (1, 0), (1, 1)):
                for e, (c0, c1) in enumerate(EDGE_CORNERS):
                    o = CORNER_OFFSETS[c0]
                    if edge_axis(e) == a and o[u] == 1 - du and o[v] == 1 - dv:
                        row.append(e)
            local_edge.append(row)
            # Which end of an axis-a edge the official code lists first (y-edges run towards -y).
            e = next(e for e in range(12) if edge_axis(e) == a)
            first_end.append(CORNER_OFFSETS[EDGE_CORNERS[e][0]][a])
        self.local_edge = t(local_edge)  # (3, 4)
        self.first_end = t(first_end)  # (3,)


_TABLES: dict[torch.device, _Tables] = {}


def _tables(device: torch.device) -> _Tables:
    if device not in _TABLES:
        _TABLES[device] = _Tables(device)
    return _TABLES[device]


def normalize_weights(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, 21) raw weights → beta (S, 12), alpha (S, 8), gamma (S,) as InstantMesh normalises them."""
    raw = raw.float()
    beta = torch.tanh(raw[:, :12]) * WEIGHT_SCALE + 1
    alpha = torch.tanh(raw[:, 12:20]) * WEIGHT_SCALE + 1
    gamma = torch.sigmoid(raw[:, 20]) * WEIGHT_SCALE + (1 - WEIGHT_SCALE) / 2
    return beta, alpha, gamma


def _surface_weights(
    weight_fn: WeightFn | None, cube_ids: torch.Tensor, corners: torch.Tensor, chunk_size: int | None
) -> torch.Tensor:
    s = cube_ids.shape[0]
    if weight_fn is None:  # neutral weights: beta = alpha = 1, gamma = 0.5
        return torch.zeros((s, N_WEIGHTS), dtype=torch.float32, device=cube_ids.device)
    step = s if not chunk_size else int(chunk_size)
    parts = []
    for start in range(0, s, step):
        w = weight_fn(cube_ids[start : start + step], corners[start : start + step])
        n = min(step, s - start)
        if tuple(w.shape) != (n, N_WEIGHTS):
            raise ValueError(f"weight_fn must return ({n}, {N_WEIGHTS}) weights, got {tuple(w.shape)}")
        parts.append(w.float())
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def extract(
    grid: FlexiCubesGrid,
    sdf: torch.Tensor,
    deformed_vertices: torch.Tensor | None = None,
    weight_fn: WeightFn | None = None,
    *,
    weights: torch.Tensor | None = None,
    chunk_size: int | None = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract the FlexiCubes mesh (inference quad split).

    sdf: (V,) SDF at the grid vertices (negative inside), V = (res+1)³ in grid vertex order.
    deformed_vertices: (V, 3) vertex positions to interpolate (undeformed grid if None).
    weight_fn(cube_ids (S,) long, corner_vertex_ids (S, 8) long) -> (S, 21) raw weights
        (before tanh/sigmoid; columns 0:12 beta per edge in EDGE_CORNERS order, 12:20 alpha per
        corner, 20 gamma).  Called only for the cubes the surface crosses, in ascending cube
        order, in chunks of at most ``chunk_size`` cubes.
    weights: alternatively, (res³, 21) raw weights for every cube.  Neither → neutral weights.

    Returns vertices (N, 3) float32 — one per dual vertex of every surface cube, in cube order —
    and faces (F, 3) long, wound outward (towards positive SDF).
    """
    device = sdf.device
    if grid.device != device:
        raise ValueError(f"SDF is on {device} but the FlexiCubes grid is on {grid.device}")
    if weights is not None:
        if weight_fn is not None:
            raise ValueError("pass either weight_fn or weights, not both")
        if tuple(weights.shape) != (grid.n_cubes, N_WEIGHTS):
            raise ValueError(f"weights must be ({grid.n_cubes}, {N_WEIGHTS}), got {tuple(weights.shape)}")
        full = weights
        weight_fn = lambda ids, corners: full[ids]  # noqa: E731
    if deformed_vertices is None:
        deformed_vertices = grid.vertices
    if tuple(deformed_vertices.shape) != (grid.n_vertices, 3):
        raise ValueError(f"vertices must be ({grid.n_vertices}, 3), got {tuple(deformed_vertices.shape)}")

    tb = _tables(device)
    r, side = grid.res, grid.side
    sdf = sdf.reshape(-1)
    occ = grid.occupancy(sdf)
    case_grid = grid.case_grid(occ)
    flat_case = case_grid.reshape(-1)
    cube_ids = torch.nonzero((flat_case != 0) & (flat_case != 255)).squeeze(1)
    n_surf = cube_ids.shape[0]
    if n_surf == 0:
        return (
            torch.zeros((0, 3), dtype=torch.float32, device=device),
            torch.zeros((0, 3), dtype=torch.long, device=device),
        )
    cases = flat_case[cube_ids].long()

    # C16/C19: a flagged cube whose neighbour across its ambiguous face is flagged too takes the
    # complementary case (both do, so the shared face stays consistent).  Neighbours keep their
    # original cases for this test; neighbours outside the grid never trigger it.
    cube_xyz = torch.stack([cube_ids // (r * r), (cube_ids // r) % r, cube_ids % r], dim=1)
    nb = cube_xyz + tb.check_offset[cases]
    in_grid = ((nb >= 0) & (nb < r)).all(dim=1)
    nb = nb.clamp(0, r - 1)
    nb_case = flat_case[(nb[:, 0] * r + nb[:, 1]) * r + nb[:, 2]].long()
    invert = tb.check_flag[cases] & in_grid & tb.check_flag[nb_case]
    cases = torch.where(invert, tb.check_case[cases], cases)

    corners = grid.cube_corners(cube_ids)  # (S, 8)
    beta, alpha, gamma = normalize_weights(_surface_weights(weight_fn, cube_ids, corners, chunk_size))

    # Zero crossing on every cube edge, with the SDF scaled by this cube's corner weights alpha.
    s_c = sdf[corners].float()  # (S, 8)
    x_c = deformed_vertices[corners].float()  # (S, 8, 3)
    s0, s1 = s_c[:, tb.edge_a], s_c[:, tb.edge_b]  # (S, 12)
    w0 = s1 * alpha[:, tb.edge_b]
    w1 = -(s0 * alpha[:, tb.edge_a])
    crossing = (x_c[:, tb.edge_a] * w0[..., None] + x_c[:, tb.edge_b] * w1[..., None]) / (w0 + w1)[..., None]
    owner = tb.edge_to_vd[cases]  # (S, 12): dual vertex of each crossed edge, -1 elsewhere
    crossed = owner >= 0
    crossing = torch.where(crossed[..., None], crossing, 0.0)  # uncrossed edges may be 0/0

    # Dual vertices: beta-weighted mean of the crossings in each edge group.
    slots = torch.arange(MAX_DUAL_VERTICES, device=device)
    member = (owner[..., None] == slots).float() * beta[..., None]  # (S, 12, 4)
    vd = torch.bmm(member.transpose(1, 2), crossing) / member.sum(dim=1).clamp_min(1e-12)[..., None]
    num_vd = tb.num_vd[cases]  # (S,)
    vertices = vd[slots < num_vd[:, None]]  # (N, 3), cube-major
    first_vd = torch.cumsum(num_vd, 0) - num_vd  # index of each surface cube's first dual vertex

    # Quads: crossed grid edges with four cubes around them (i.e. not on the grid's outer faces),
    # laid out per axis as (along-axis position, u position - 1, v position - 1).
    dx = occ[1:] ^ occ[:-1]
    dy = occ[:, 1:] ^ occ[:, :-1]
    dz = occ[:, :, 1:] ^ occ[:, :, :-1]
    edges = torch.stack(
        [
            dx[:, 1:r, 1:r],
            dy[1:r, :, 1:r].permute(1, 0, 2),
            dz[1:r, 1:r, :].permute(2, 0, 1),
        ]
    )  # (3, r, r-1, r-1)
    a, p, q, rr = torch.nonzero(edges).unbind(1)
    cube_stride = torch.tensor([[r * r, r, 1], [r, r * r, 1], [1, r * r, r]], dtype=torch.long, device=device)
    vert_stride = torch.tensor(
        [[side * side, side, 1], [side, side * side, 1], [1, side * side, side]], dtype=torch.long, device=device
    )
    st = cube_stride[a]  # (Q, 3): strides of (axis, u, v) in cube indices
    du = torch.tensor([0, 0, 1, 1], device=device)
    dv = torch.tensor([0, 1, 0, 1], device=device)
    quad_cubes = (p * st[:, 0])[:, None] + (q[:, None] + du) * st[:, 1:2] + (rr[:, None] + dv) * st[:, 2:3]
    surf_index = torch.empty(grid.n_cubes, dtype=torch.int32, device=device)
    surf_index[cube_ids] = torch.arange(n_surf, dtype=torch.int32, device=device)
    qs = surf_index[quad_cubes].long()  # (Q, 4) surface-cube index of the four cubes
    quad_vd = first_vd[qs] + owner[qs, tb.local_edge[a]]  # (Q, 4) in ascending cube order

    # Winding: the four cubes taken in the order (0, 1, 3, 2) circle the edge so that the quad's
    # normal points to the edge's first end (the end the official code lists first); that is
    # outward when the first end is outside, otherwise the order is reversed.  "Outside" is
    # SDF >= 0, consistent with the inside test (the official code tests s > 0 here, which
    # mis-winds a quad whose first end has an SDF of exactly 0).
    vs = vert_stride[a]
    first = (p + tb.first_end[a]) * vs[:, 0] + (q + 1) * vs[:, 1] + (rr + 1) * vs[:, 2]
    first_outside = ~occ.reshape(-1)[first]
    order = torch.where(
        first_outside[:, None],
        torch.tensor([0, 1, 3, 2], device=device),
        torch.tensor([2, 3, 1, 0], device=device),
    )
    quad = torch.gather(quad_vd, 1, order)
    g = gamma[torch.gather(qs, 1, order)]  # (Q, 4)

    # Split along the diagonal whose cubes have the larger gamma product (ties → 1–3 diagonal).
    split_02 = (g[:, 0] * g[:, 2]) > (g[:, 1] * g[:, 3])
    tri_02 = quad[:, [0, 1, 2, 0, 2, 3]]
    tri_13 = quad[:, [0, 1, 3, 3, 1, 2]]
    faces = torch.where(split_02[:, None], tri_02, tri_13).reshape(-1, 3)
    return vertices, faces
