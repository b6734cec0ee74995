"""A pure-torch triangle rasterizer with nvdiffrast's outputs (the reference / CPU backend).

Conventions (the same as nvdiffrast's, so that the two backends are interchangeable):

- input: clip-space positions ``pos`` (B, N, 4) and triangles ``tri`` (F, 3);
- pixel (row i, column j) of an H x W image samples NDC x = (2j + 1) / W - 1,
  y = (2i + 1) / H - 1 (row 0 at NDC y = -1);
- output ``rast`` (B, H, W, 4) = (u, v, z/w, triangle_id + 1), where (u, v) are the
  perspective-correct barycentric weights of the triangle's vertices 0 and 1
  (vertex 2 gets 1 - u - v) and 0 everywhere no triangle covers the pixel;
- the nearest surface (smallest z/w in [-1, 1]) wins; no back-face culling.

How it stays fast without per-pixel Python loops: every triangle enumerates the
pixel centres of its screen bounding box (``repeat_interleave`` over bbox sizes, in
chunks that bound memory), tests them with edge functions, and the depth test is one
``scatter_reduce(amin)`` over a 64-bit key (quantised depth << 32 | triangle id), so
ties break deterministically towards the lower triangle id. The winners' barycentrics
are then recomputed once per covered pixel.

Simplification against nvdiffrast: triangles with a vertex behind the camera
(w <= 0) are dropped rather than clipped; meshes here sit well inside the view
frustum. Pixels exactly on a shared edge may go to either triangle.
"""

from __future__ import annotations

import torch

# Candidate (pixel, triangle) pairs processed at once; bounds temporary memory (~60 bytes each).
CANDIDATE_CHUNK = 1 << 22
_NO_HIT = torch.iinfo(torch.int64).max
_DEPTH_LEVELS = (1 << 31) - 1  # depth quantisation (z/w in [-1, 1] → 31 bits, finer than float32's 24)


def _edge(ax, ay, bx, by, px, py):
    """Twice the signed area of (a, b, p): positive when p lies left of a→b."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


class TorchRasterizer:
    """Rasterize / interpolate in plain torch on any device."""

    name = "torch"

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    # ------------------------------------------------------------------ rasterize
    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """pos (B, N, 4) clip coordinates, tri (F, 3) → rast (B, H, W, 4) float32."""
        if pos.ndim != 3 or pos.shape[-1] != 4:
            raise ValueError(f"pos must be (B, N, 4), got {tuple(pos.shape)}")
        h, w = int(resolution[0]), int(resolution[1])
        pos = pos.detach().float()
        tri = tri.detach().long()
        return torch.stack([self._rasterize_one(p, tri, h, w) for p in pos])

    def _rasterize_one(self, p: torch.Tensor, tri: torch.Tensor, h: int, w: int) -> torch.Tensor:
        dev = p.device
        out = torch.zeros(h, w, 4, device=dev)
        if tri.shape[0] == 0:
            return out
        wc = p[:, 3]
        safe_w = torch.where(wc > 0, wc, torch.ones_like(wc))
        # Pixel-space coordinates: pixel centre j sits at x = j.
        sx = (p[:, 0] / safe_w + 1.0) * (0.5 * w) - 0.5
        sy = (p[:, 1] / safe_w + 1.0) * (0.5 * h) - 0.5
        sz = p[:, 2] / safe_w
        x0, x1, x2 = sx[tri[:, 0]], sx[tri[:, 1]], sx[tri[:, 2]]
        y0, y1, y2 = sy[tri[:, 0]], sy[tri[:, 1]], sy[tri[:, 2]]
        area = _edge(x0, y0, x1, y1, x2, y2)
        in_front = (wc[tri] > 0).all(dim=1)
        xmin = torch.ceil(torch.minimum(torch.minimum(x0, x1), x2)).clamp(min=0)
        xmax = torch.floor(torch.maximum(torch.maximum(x0, x1), x2)).clamp(max=w - 1)
        ymin = torch.ceil(torch.minimum(torch.minimum(y0, y1), y2)).clamp(min=0)
        ymax = torch.floor(torch.maximum(torch.maximum(y0, y1), y2)).clamp(max=h - 1)
        nx = (xmax - xmin + 1).clamp(min=0)
        ny = (ymax - ymin + 1).clamp(min=0)
        keep = in_front & (area.abs() > 1e-12) & (nx > 0) & (ny > 0)
        ids = torch.nonzero(keep).squeeze(1)
        if ids.numel() == 0:
            return out
        nx, ny = nx[ids].long(), ny[ids].long()
        xmin, ymin = xmin[ids].long(), ymin[ids].long()
        counts = nx * ny
        # The triangle's sign makes the edge test orientation-independent (no culling).
        sign = torch.sign(area[ids])
        best = torch.full((h * w,), _NO_HIT, dtype=torch.int64, device=dev)
        ends = torch.cumsum(counts, 0)
        start = 0
        n_tri = ids.numel()
        while start < n_tri:
            # Largest run of triangles whose candidates fit in one chunk (at least one triangle).
            base = ends[start - 1] if start > 0 else ends.new_zeros(())
            stop = int(torch.searchsorted(ends, base + CANDIDATE_CHUNK, right=True))
            stop = max(stop, start + 1)
            self._scan(
                ids[start:stop], counts[start:stop], nx[start:stop], xmin[start:stop], ymin[start:stop],
                sign[start:stop], tri, sx, sy, sz, best, w,
            )
            start = stop
        hit = best != _NO_HIT
        pix = torch.nonzero(hit).squeeze(1)
        if pix.numel() == 0:
            return out
        tid = (best[pix] & 0xFFFFFFFF).long()
        px = (pix % w).float()
        py = torch.div(pix, w, rounding_mode="floor").float()
        t = tri[tid]
        ax, ay, bx, by, cx, cy = sx[t[:, 0]], sy[t[:, 0]], sx[t[:, 1]], sy[t[:, 1]], sx[t[:, 2]], sy[t[:, 2]]
        a = _edge(ax, ay, bx, by, cx, cy)
        l0 = _edge(bx, by, cx, cy, px, py) / a
        l1 = _edge(cx, cy, ax, ay, px, py) / a
        l2 = 1.0 - l0 - l1
        zw = l0 * sz[t[:, 0]] + l1 * sz[t[:, 1]] + l2 * sz[t[:, 2]]
        # Perspective correction: screen-space weights divided by w, renormalised.
        q0, q1, q2 = l0 / wc[t[:, 0]], l1 / wc[t[:, 1]], l2 / wc[t[:, 2]]
        qs = q0 + q1 + q2
        vals = torch.stack([q0 / qs, q1 / qs, zw.clamp(-1.0, 1.0), (tid + 1).float()], dim=1)
        out.view(-1, 4)[pix] = vals
        return out

    @staticmethod
    def _scan(ids, counts, nx, xmin, ymin, sign, tri, sx, sy, sz, best, w):
        """Edge-test every bbox pixel of triangles ``ids``; fold the hits into ``best`` (depth key min)."""
        dev = sx.device
        total = int(counts.sum())
        local_tri = torch.repeat_interleave(torch.arange(ids.numel(), device=dev), counts, output_size=total)
        offsets = torch.cumsum(counts, 0) - counts
        k = torch.arange(total, device=dev) - offsets[local_tri]
        nxl = nx[local_tri]
        px = xmin[local_tri] + k % nxl
        py = ymin[local_tri] + torch.div(k, nxl, rounding_mode="floor")
        t = tri[ids[local_tri]]
        ax, ay, bx, by, cx, cy = sx[t[:, 0]], sy[t[:, 0]], sx[t[:, 1]], sy[t[:, 1]], sx[t[:, 2]], sy[t[:, 2]]
        fx, fy = px.float(), py.float()
        s = sign[local_tri]
        e0 = _edge(bx, by, cx, cy, fx, fy) * s
        e1 = _edge(cx, cy, ax, ay, fx, fy) * s
        e2 = _edge(ax, ay, bx, by, fx, fy) * s
        inside = (e0 >= 0) & (e1 >= 0) & (e2 >= 0)
        a = e0 + e1 + e2  # = |area|
        z = (e0 * sz[t[:, 0]] + e1 * sz[t[:, 1]] + e2 * sz[t[:, 2]]) / a
        inside &= (z >= -1.0) & (z <= 1.0)
        sel = torch.nonzero(inside).squeeze(1)
        if sel.numel() == 0:
            return
        depth = ((z[sel].double() + 1.0) * (0.5 * _DEPTH_LEVELS)).long().clamp(0, _DEPTH_LEVELS)
        key = (depth << 32) | ids[local_tri[sel]]
        pix = py[sel] * w + px[sel]
        best.scatter_reduce_(0, pix, key, reduce="amin")

    # ------------------------------------------------------------------ interpolate
    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
        """attr (N, C) or (1|B, N, C) per-vertex values → (B, H, W, C); 0 where no triangle.

        Differentiable with respect to ``attr``.
        """
        return interpolate_torch(attr, rast, tri)


def interpolate_torch(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation shared by both backends' CPU paths (see TorchRasterizer.interpolate)."""
    b, h, w, _ = rast.shape
    if attr.ndim == 2:
        attr = attr[None]
    tid = rast[..., 3].long() - 1  # (B, H, W)
    covered = tid >= 0
    out = attr.new_zeros(b, h, w, attr.shape[-1])
    bi, yi, xi = torch.nonzero(covered, as_tuple=True)
    if bi.numel() == 0:
        return out
    corners = tri.long()[tid[bi, yi, xi]]  # (P, 3)
    src = bi if attr.shape[0] == b and b > 1 else torch.zeros_like(bi)
    u = rast[bi, yi, xi, 0:1].to(attr.dtype)
    v = rast[bi, yi, xi, 1:2].to(attr.dtype)
    val = u * attr[src, corners[:, 0]] + v * attr[src, corners[:, 1]] + (1 - u - v) * attr[src, corners[:, 2]]
    return out.index_put((bi, yi, xi), val)
