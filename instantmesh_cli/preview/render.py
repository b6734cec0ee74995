"""Rendering a :class:`PreviewMesh`: orbit cameras and one batched, antialiased renderer.

Orbit cameras (glTF frame): the camera circles the +Y axis and looks at the origin,
``eye = d (cos e sin a, sin e, cos e cos a)``. Azimuth 0 puts the viewer on +Z, in front
of the asset; azimuth 90 on +X (the asset's right-hand side as the viewer sees it).
That is the Zero123++ convention carried into the exported frame, so a preview at
azimuth 30, elevation 20 shows what view 0 of the six-view grid shows.

The projection is the project's OpenGL one (``reconstruction.cameras.projection``: y
flipped, image row 0 at the top). Frames are rendered ``supersample`` times larger and
box-filtered down: that antialiases silhouettes and texture alike, on both backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from instantmesh_cli.preview.meshfile import PreviewMesh

FOV_DEG = 30.0
# Framing margin around the bounding sphere, so nothing touches the frame at any azimuth.
MARGIN = 1.08
# A neutral mid-light grey: dark and white objects both stand out from it (sRGB).
BACKGROUND = (0.78, 0.78, 0.78)
# Pixels per rasterizer call (frames × supersampled pixels): bounds the temporary memory,
# up to about 250 bytes a pixel where the mesh covers everything (under 4 GiB on CUDA).
PIXEL_BUDGET = {"cuda": 1 << 24, "cpu": 1 << 22}
# Supersampling stops at this many pixels a side (nvdiffrast before 0.3.3 took no more).
MAX_RASTER_SIDE = 2048


@dataclass
class Frames:
    """Rendered frames: ``images`` uint8 (V, H, W, 3) sRGB over the background, ``coverage``
    float32 (V, H, W) in [0, 1] (fraction of each pixel's samples on the mesh)."""

    images: np.ndarray
    coverage: np.ndarray

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        return self.coverage >= threshold


def fit_distance(radius: float, fov_deg: float = FOV_DEG, margin: float = MARGIN) -> float:
    """Camera distance at which a sphere of ``radius`` around the origin fills the frame (times ``margin``)."""
    return margin * max(radius, 1e-6) / math.sin(math.radians(fov_deg) / 2)


def orbit_eyes(azimuths_deg: Sequence[float], elevations_deg: Sequence[float], distance: float) -> np.ndarray:
    """(V, 3) camera positions on the orbit (see the module docstring)."""
    az = np.radians(np.asarray(azimuths_deg, np.float64))
    el = np.radians(np.asarray(elevations_deg, np.float64))
    az, el = np.broadcast_arrays(az, el)
    return distance * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)


def look_at(eyes: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """(V, 4, 4) world-to-camera matrices (OpenGL: x right, y up, looking down -z) of cameras at ``eyes`` aimed at the origin."""
    eyes = np.asarray(eyes, np.float64).reshape(-1, 3)
    back = eyes / np.linalg.norm(eyes, axis=1, keepdims=True)
    right = np.cross(np.asarray(up, np.float64), back)
    norm = np.linalg.norm(right, axis=1, keepdims=True)
    if (norm < 1e-9).any():
        raise ValueError("a camera straight above or below the object has no 'up'; keep |elevation| < 90")
    right /= norm
    true_up = np.cross(back, right)
    view = np.zeros((len(eyes), 4, 4))
    view[:, 0, :3], view[:, 1, :3], view[:, 2, :3] = right, true_up, back
    view[:, :3, 3] = -np.einsum("vij,vj->vi", view[:, :3, :3], eyes)
    view[:, 3, 3] = 1.0
    return view


def orbit_mvp(
    azimuths_deg: Sequence[float], elevations_deg: Sequence[float], distance: float, fov_deg: float = FOV_DEG,
    radius: float | None = None,
) -> torch.Tensor:
    """(V, 4, 4) float32 world → clip matrices of orbit cameras.

    ``radius`` (of the object around the origin) sets tight near / far planes for depth
    precision; without it they are the project's defaults (0.1, 1000).
    """
    from instantmesh_cli.reconstruction.cameras import FAR, NEAR, projection

    near, far = NEAR, FAR
    if radius is not None and distance > radius:
        near, far = max((distance - radius) * 0.5, 1e-3), (distance + radius) * 2.0
    proj = projection(fov_deg, near, far).to(torch.float64).numpy()
    view = look_at(orbit_eyes(azimuths_deg, elevations_deg, distance))
    return torch.from_numpy(proj @ view).float()


def camera_centers(mvp: torch.Tensor) -> torch.Tensor:
    """(V, 3) eye positions of perspective ``mvp`` matrices: the point that clip x, y and w all send to 0."""
    m = mvp.double()
    rows = m[:, [0, 1, 3], :]
    return torch.linalg.solve(rows[:, :, :3], -rows[:, :, 3:]).squeeze(-1).float()


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


class _DeviceMesh:
    """The mesh's arrays on the rasterizer's device, uploaded once for every chunk of frames."""

    def __init__(self, mesh: PreviewMesh, device: torch.device, *, shaded: bool):
        self.positions = torch.from_numpy(mesh.positions).to(device)
        self.faces = torch.from_numpy(mesh.faces).to(device)
        self.normals = torch.from_numpy(mesh.corner_normals()).to(device) if shaded else None
        self.vertex_colors = torch.from_numpy(mesh.vertex_colors).to(device)
        self.uv = None if mesh.uv is None else torch.from_numpy(mesh.uv).to(device)
        self.face_colors = torch.from_numpy(mesh.face_colors).to(device)
        self.face_texture = torch.from_numpy(mesh.face_texture.astype(np.int64)).to(device)
        self.textures = [torch.from_numpy(t).to(device) for t in mesh.textures]


def render_frames(
    mesh: PreviewMesh,
    mvp: torch.Tensor,
    size: int | tuple[int, int],
    *,
    device: str | torch.device | None = "auto",
    rasterizer=None,
    shaded: bool = True,
    background: Sequence[float] | float = BACKGROUND,
    supersample: int = 2,
) -> Frames:
    """Render ``mesh`` at every camera of ``mvp`` (V, 4, 4); as few rasterizer calls as memory allows.

    ``shaded``: a headlight (Lambert, two-sided, plus a little sky light from +Y) so that shape
    reads; ``False`` renders the plain colour (albedo), as the quality check needs.
    ``rasterizer`` defaults to ``get_rasterizer('auto', device)``.
    """
    from instantmesh_cli.texture.raster import get_rasterizer

    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if rasterizer is None:
        rasterizer = get_rasterizer("auto", None if device in (None, "auto") else device)
    dev = rasterizer.device
    ss = max(1, min(int(supersample), MAX_RASTER_SIDE // max(h, w)))
    bg = torch.as_tensor(background, dtype=torch.float32, device=dev).reshape(-1)[:3].expand(3)
    dm = _DeviceMesh(mesh, dev, shaded=shaded)
    mvp = torch.as_tensor(mvp, dtype=torch.float32).reshape(-1, 4, 4)
    eyes = camera_centers(mvp)
    budget = PIXEL_BUDGET["cuda" if dev.type == "cuda" else "cpu"]
    per_call = max(1, budget // (h * w * ss * ss))
    images, coverage = [], []
    for start in range(0, len(mvp), per_call):
        img, cov = _render_chunk(
            dm, rasterizer, mvp[start : start + per_call].to(dev), eyes[start : start + per_call].to(dev),
            (h * ss, w * ss), ss, shaded, bg,
        )
        images.append(img.cpu())
        coverage.append(cov.cpu())
    return Frames(torch.cat(images).numpy(), torch.cat(coverage).numpy())


@torch.no_grad()
def _render_chunk(dm: _DeviceMesh, rasterizer, mvp, eyes, res, ss, shaded, bg):
    from instantmesh_cli.texture.render import clip_positions, sample_texture

    pos = clip_positions(dm.positions, mvp)
    rast = rasterizer.rasterize(pos, dm.faces, res)
    face = rast[..., 3].long() - 1  # (V, H, W), -1 where empty
    mask = face >= 0
    # From here on only the covered pixels: their attributes come straight from the
    # (perspective-correct) barycentrics, with no full-image attribute buffers.
    vi, yi, xi = torch.nonzero(mask, as_tuple=True)
    fid = face[vi, yi, xi]
    bary = rast[vi, yi, xi, :2]
    w0, w1 = bary[:, 0:1], bary[:, 1:2]
    w2 = 1.0 - w0 - w1
    tri = dm.faces[fid]

    def interp(a: torch.Tensor) -> torch.Tensor:
        return w0 * a[tri[:, 0]] + w1 * a[tri[:, 1]] + w2 * a[tri[:, 2]]

    point, vcolor = interp(dm.positions), interp(dm.vertex_colors)
    albedo = vcolor * dm.face_colors[fid]
    if dm.textures:
        uv = interp(dm.uv)
        tex_id = dm.face_texture[fid]
        for k, tex in enumerate(dm.textures):
            sel = torch.nonzero(tex_id == k).squeeze(1)
            if sel.numel():
                texel = sample_texture(tex.float() / 255.0, uv[sel])
                albedo[sel] = albedo[sel] * _srgb_to_linear(texel)
    if shaded:
        corner_n = dm.normals[fid]
        normal = w0 * corner_n[:, 0] + w1 * corner_n[:, 1] + w2 * corner_n[:, 2]
        to_eye = F.normalize(eyes[vi] - point, dim=1)
        n = F.normalize(normal, dim=1)
        facing = (n * to_eye).sum(dim=1).abs()  # two-sided: foreign meshes with flipped faces still read
        n = torch.where(((n * to_eye).sum(dim=1) < 0)[:, None], -n, n)
        light = 0.22 + 0.68 * facing + 0.10 * (0.5 + 0.5 * n[:, 1])
        albedo = albedo * light[:, None]
    color = _linear_to_srgb(albedo)
    v, h, w = mask.shape
    img = bg.expand(v, h, w, 3).clone()
    img[vi, yi, xi] = color
    cov = mask.float()
    if ss > 1:
        img = F.avg_pool2d(img.permute(0, 3, 1, 2), ss).permute(0, 2, 3, 1)
        cov = F.avg_pool2d(cov[:, None], ss)[:, 0]
    return (img * 255.0 + 0.5).clamp(0, 255).to(torch.uint8), cov


def render_orbit(
    mesh: PreviewMesh,
    azimuths_deg: Sequence[float],
    elevations_deg: Sequence[float] | float,
    size: int,
    *,
    device: str | torch.device | None = "auto",
    rasterizer=None,
    fov_deg: float = FOV_DEG,
    shaded: bool = True,
    background: Sequence[float] | float = BACKGROUND,
    supersample: int = 2,
) -> Frames:
    """The (normalised) mesh seen from orbit cameras framed on its bounding sphere, all in one batch."""
    az = np.asarray(azimuths_deg, np.float64).reshape(-1)
    el = np.broadcast_to(np.asarray(elevations_deg, np.float64), az.shape)
    if (np.abs(el) >= 90).any():
        raise ValueError("elevation must be strictly between -90 and 90 degrees")
    radius = mesh.radius
    distance = fit_distance(radius, fov_deg)
    mvp = orbit_mvp(az, el, distance, fov_deg, radius=radius)
    return render_frames(
        mesh, mvp, size, device=device, rasterizer=rasterizer, shaded=shaded, background=background,
        supersample=supersample,
    )
