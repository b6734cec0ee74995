"""The texture stage: (optional) GTR refinement → decimation → UV atlas → bake.

:func:`texture_mesh` is what the pipeline calls. Everything that touches many
pixels or texels runs on the planes' device; decimation and the UV unwrap run on
the CPU (both are fast at the default face budget, see :data:`DEFAULT_TARGET_FACES`),
on a GPU in a thread beside the refinement, which depends on neither (H200: 0.129 s of
them hidden behind it).
"""

from __future__ import annotations

import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from instantmesh_cli.errors import InputError
from instantmesh_cli.mesh import Mesh, decimate
from instantmesh_cli.texture.bake import bake_texture
from instantmesh_cli.texture.raster import get_rasterizer
from instantmesh_cli.texture.refine import as_color_head, query_colors, refine_texture
from instantmesh_cli.texture.render import mvp_from_cameras, surface_samples
from instantmesh_cli.texture.uv import DEFAULT_UV_METHOD, unwrap
from instantmesh_cli.timing import StageTimer

# Faces kept for the UV atlas, chosen by measurement (decimated marching-cubes blobs,
# smooth and noisy, like FlexiCubes output at grid 128 = 57k-165k faces):
# - xatlas (single-threaded, super-linear) cannot be the default: even with the chart
#   area capped it took 0.29 / 0.59 / 1.14 / 1.55 s at 10k / 20k / 30k / 40k faces on
#   the noisy blob (GPU host's Xeon; up to 2.6 s at 40k on the 2-core dev VM); with
#   default options 2.0 s at 20k and 8.1 s at 40k on the dev VM's smooth blob;
# - the box unwrap costs ~11 ms per 10k faces there (0.044 s at 40k), the bake is
#   ~7 ms on the GPU whatever the face count, decimation 0.02-0.09 s;
# so the budget is set by quality, not time: 40k keeps the detail of a grid-128 surface
# (and matches Hunyuan3D-2's 40k), while UV + bake + GLB export measured 0.32-0.38 s.
DEFAULT_TARGET_FACES = 40_000


@dataclass
class TextureReport:
    """What the texture stage did: timings (s), PSNRs (dB) on the input views' foreground, sizes."""

    timings: dict[str, float] = field(default_factory=dict)
    psnr_before: float | None = None
    psnr_after: float | None = None
    refine_steps: int = 0
    faces_in: int = 0
    faces_out: int = 0
    charts: int = 0
    uv_method: str = ""
    rasterizer: str = ""
    texture_size: int = 0
    # Seconds of decimation + UV atlas (CPU) that ran while the refinement ran on the GPU, so
    # the stage's wall time is the sum of its timings less this.
    overlap_s: float = 0.0


def foreground_targets(images: torch.Tensor, mask: torch.Tensor, erode: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss pixels and their colours. images (V, 3, H, W) in [0, 1] on white; mask (V, H, W).

    ``erode`` drops the mesh silhouette's outermost pixel ring: there the views blend
    the object with the white background, which would pull the colours towards white.
    """
    m = mask
    if erode:
        m = -F.max_pool2d(-mask[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0.5
    pixels = torch.nonzero(m.reshape(-1)).squeeze(1)
    colors = images.permute(0, 2, 3, 1).reshape(-1, 3)[pixels]
    return pixels, colors


def texture_mesh(
    mesh: Mesh,
    planes: torch.Tensor,
    color_head: Any,
    images: torch.Tensor | None = None,
    cameras: torch.Tensor | None = None,
    *,
    views: int | None = None,
    scale: float = 1.0,
    refine_steps: int = 20,
    texture_size: int = 1024,
    target_faces: int | None = None,
    uv_method: str | None = None,
    rasterizer: str | None = "auto",
    bake: bool = True,
    progress: Callable[[int, int], None] | None = None,
    overlap: bool | None = None,
) -> tuple[Mesh, TextureReport]:
    """Refine the colour field on the input views, then bake it into a UV texture.

    - ``planes`` (1, 3, C, H, W) triplane; ``color_head``: a module mapping (..., 3C)
      features to rgb (or the reconstruction model / its decoder, whose ``color`` is used);
      neither is modified.
    - ``images`` (V, 3, H, W) input views in [0, 1] on white (None: no refinement and no
      PSNR; with ``refine_steps=0`` the PSNR is measured, nothing refined);
      ``cameras`` (V, 16) camera vectors or (V, 4, 4) MVPs; None: the Zero123++ cameras
      for ``views`` (default V) views at radius ``4 * scale``.
    - ``refine_steps`` 0 skips refinement; ``target_faces`` None: :data:`DEFAULT_TARGET_FACES`,
      0: keep every face;
      ``uv_method`` "box" (default) or "xatlas"; ``rasterizer`` auto | nvdiffrast | torch.
    - ``bake=False``: vertex colours from the (refined) field instead of a texture.
    - ``progress(done, steps)`` after each refinement step.
    - ``overlap``: decimate and unwrap (CPU) in a thread while the refinement runs (None: on a
      CUDA device, where the refinement leaves the CPU mostly idle). The result is the same.

    Returns the mesh in the model frame — textured (``uv`` + ``texture``; vertex colours
    at the vertices too, for PLY) or vertex-coloured — and a :class:`TextureReport`.
    """
    device = planes.device
    report = TextureReport(faces_in=mesh.num_faces, texture_size=int(texture_size) if bake else 0)
    timings = report.timings
    timer = StageTimer(device)
    head = as_color_head(color_head)
    if mesh.num_faces == 0:
        raise InputError("the reconstructed mesh is empty; nothing to texture")
    if planes.ndim != 5 or planes.shape[0] != 1 or planes.shape[1] != 3:
        raise ValueError(f"planes must be (1, 3, C, H, W), got {tuple(planes.shape)}")
    # The user-facing ranges are checked once, in PipelineOptions.check; these guard the library call.
    if bake and texture_size < 1:
        raise ValueError(f"texture_size must be positive, got {texture_size}")
    if target_faces is not None and target_faces < 0:
        raise ValueError(f"target_faces must be 0 (keep all) or positive, got {target_faces}")
    rast = get_rasterizer(rasterizer, device)
    report.rasterizer = rast.name

    if target_faces is None:
        target_faces = DEFAULT_TARGET_FACES

    def atlas_work(surface: Mesh) -> "tuple[Mesh, Any]":
        """2. fewer faces for the atlas, 3. the UV atlas: CPU only, independent of the refinement."""
        start = time.perf_counter()  # not ``timer``: it synchronises the GPU, which would wait for the refinement
        if bake and target_faces > 0 and surface.num_faces > target_faces:
            surface = decimate(surface, target_faces)
        timings["decimate"] = time.perf_counter() - start
        if not bake:
            return surface, None
        found = unwrap(surface.vertices, surface.faces, uv_method or DEFAULT_UV_METHOD, texture_size=int(texture_size))
        timings["uv"] = found.seconds
        return surface, found

    steps = max(int(refine_steps), 0)
    if overlap is None:
        overlap = device.type == "cuda"
    pending = None
    if overlap and images is not None and steps:
        from instantmesh_cli.thread_pools import shared_pool

        pending = shared_pool("atlas", 1).submit(atlas_work, mesh)

    # 1. Refinement on the input views (mesh fixed, one rasterization). With 0 steps the
    #    input-view PSNR is still measured (one forward pass) for the report.
    refined_planes = planes.float()
    try:
        if images is not None:
            with timer("refine_setup", timings):
                if cameras is None:
                    from instantmesh_cli.reconstruction.cameras import DEFAULT_RADIUS, zero123plus_cameras

                    cameras = zero123plus_cameras(views or images.shape[0], radius=DEFAULT_RADIUS * scale)
                if len(cameras) != images.shape[0]:
                    raise ValueError(f"{images.shape[0]} views but {len(cameras)} cameras")
                images = images.to(device, torch.float32)
                mvp = mvp_from_cameras(cameras)
                verts = torch.from_numpy(mesh.vertices).to(device)
                faces = torch.from_numpy(mesh.faces).to(device)
                samples = surface_samples(rast, verts, faces, mvp, tuple(images.shape[-2:]))
                pixels, targets = foreground_targets(images, samples.mask)
                # Surface points of the loss pixels: positions within samples.points.
                lookup = torch.full((samples.mask.numel(),), -1, dtype=torch.long, device=device)
                lookup[samples.pixels] = torch.arange(samples.pixels.numel(), device=device)
                points = samples.points[lookup[pixels]]
            with timer("refine", timings):
                result = refine_texture(refined_planes, head, points, targets, steps=steps, progress=progress)
            if steps:
                refined_planes, head = result.planes, result.color_head
            report.psnr_before, report.psnr_after, report.refine_steps = result.psnr_before, result.psnr_after, steps
    except BaseException:
        if pending is not None:  # the refinement's error is the one to report; the thread finishes first
            futures.wait([pending])
        raise
    if pending is None:
        mesh, atlas = atlas_work(mesh)
    else:
        waited = time.perf_counter()
        mesh, atlas = pending.result()  # re-raises the atlas work's error, if any
        waited = time.perf_counter() - waited
        report.overlap_s = max(0.0, timings["decimate"] + timings.get("uv", 0.0) - waited)

    def color_fn(points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return query_colors(refined_planes, head, points.to(device, torch.float32))

    report.faces_out = mesh.num_faces
    verts = torch.from_numpy(mesh.vertices).to(device)

    if not bake:
        with timer("vertex_colors", timings):
            colors = color_fn(verts).clamp(0, 1).cpu().numpy()
        return Mesh(mesh.vertices, mesh.faces, colors, metadata=dict(mesh.metadata)), report
    report.charts, report.uv_method = atlas.charts, atlas.method

    # 4. Bake on the device.
    with timer("bake", timings):
        positions = torch.from_numpy(mesh.vertices[atlas.vertex_ids]).to(device)
        uv_faces = torch.from_numpy(atlas.faces).to(device)
        baked = bake_texture(rast, positions, torch.from_numpy(atlas.uv).to(device), uv_faces, color_fn, int(texture_size))
        vertex_colors = color_fn(positions).clamp(0, 1)
        texture = baked.texture.cpu().numpy()
        vertex_colors = vertex_colors.cpu().numpy()
    metadata = dict(mesh.metadata)
    metadata["texture"] = {"uv_method": atlas.method, "charts": atlas.charts, "utilization": atlas.utilization}
    out = Mesh(mesh.vertices[atlas.vertex_ids], atlas.faces, vertex_colors, atlas.uv, texture, metadata)
    return out, report
