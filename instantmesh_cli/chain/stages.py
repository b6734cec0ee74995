"""The chain, written once: read → prepare → load → multiview → reconstruct → mesh → texture → export.

Every stage has one signature, ``stage(models, job)``: it reads the job's options and
what earlier stages put on the :class:`~instantmesh_cli.chain.job.Job`, writes its own
fields, and takes the models it needs from ``models`` (loaded once, shared by jobs). A stage that
had nothing to do returns ``False`` (its time is then not reported: ``load`` when the
models are already resident). Drivers pick a :func:`plan` and schedule its stages —
in order (:func:`~instantmesh_cli.chain.run.run_job`), or in overlapping groups (the
batch runner) — and never re-implement one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

from instantmesh_cli.errors import ImeshError, InputError

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.models import Models

# Where a stage's work runs, so a scheduler can overlap CPU work of one image with the GPU work of another.
Group = Literal["front", "gpu", "back"]


def read(models: "Models", job: "Job") -> None:
    """Decode every input (files, bytes, images) into ``job.images``."""
    from instantmesh_cli.images import load_image, normalize_image

    job.images = []
    for item in job.inputs:
        if item.image is not None:
            job.images.append(normalize_image(item.image))
        elif item.data is not None:
            job.images.append(load_image(item.data, name=item.label))
        elif item.path.is_symlink() and not item.path.exists():
            raise InputError(f"{item.label} is a broken link (its target {os.readlink(item.path)} is gone)")
        else:
            job.images.append(load_image(item.path, name=item.label))  # errors name the input as the user did


def read_views(models: "Models", job: "Job") -> None:
    """Decode the user's views (one 3×2 grid, or 6 / 4 view files) and check their layout → ``job.view_images``."""
    from instantmesh_cli.reconstruction.inputs import views_from_images

    read(models, job)
    job.view_images = views_from_images(job.images, [i.label for i in job.inputs], views=job.options.views)


def prepare(models: "Models", job: "Job") -> None:
    """Background removal (unless the photo has real alpha) and recentring → ``job.prepared``."""
    from instantmesh_cli.images import has_real_alpha, prepare_image

    o = job.options
    image = job.images[0]
    needs_matting = o.remove_background is True or (o.remove_background is None and not has_real_alpha(image))
    job.prepared = prepare_image(
        image,
        remove_background=o.remove_background,
        remover=models.remover(o.matting_model) if needs_matting else None,
        foreground_ratio=o.foreground_ratio,
        name=job.inputs[0].label,
    )


def load(models: "Models", job: "Job") -> bool:
    """Load both models (once per process, timed apart so per-image stage times stay comparable);
    False when they are resident."""
    return models.load(multiview=True, reconstruction=True) > 0.0


def load_multiview(models: "Models", job: "Job") -> bool:
    """``load`` for plans that stop at the views."""
    return models.load(multiview=True, reconstruction=False) > 0.0


def load_reconstruction(models: "Models", job: "Job") -> bool:
    """``load`` for plans that start from views."""
    return models.load(multiview=False, reconstruction=True) > 0.0


def multiview(models: "Models", job: "Job") -> None:
    """The six Zero123++ views of the cut-out → ``job.views`` (the 3×2 grid)."""
    from instantmesh_cli.lean_imports import import_later_stage_modules

    def progress(done: int, total: int) -> None:
        if done == 1:  # the GPU has the views' steps queued: threads that run Python beside them cost nothing now
            import_later_stage_modules()
            models.start_background_loads()
        job.report("multiview", done, total)

    o = job.options
    job.views = models.multiview(
        job.prepared.image,
        steps=o.steps,
        guidance=o.guidance,
        seed=job.seed,
        scheduler=o.scheduler,
        callback=progress,
    )
    import_later_stage_modules()  # (once per process: a no-op when the first step started it)


def reconstruct(models: "Models", job: "Job") -> None:
    """Views → triplane → cleaned mesh (``job.reconstruction``, ``job.mesh``); an empty surface fails the job."""
    from instantmesh_cli.reconstruction.inputs import views_from_images, views_to_tensor
    from instantmesh_cli.reconstruction.stage import reconstruct as run_reconstruction

    o = job.options
    model = models.reconstructor
    if job.view_images is None:
        job.view_images = views_from_images([job.views], [job.name], views=o.views)
    job.view_tensor = views_to_tensor(job.view_images, model.cfg.input_size)
    job.reconstruction = run_reconstruction(
        model, job.view_tensor, scale=o.scale, clean=o.clean, surface_only=o.surface_only
    )
    mesh = job.reconstruction.mesh
    if mesh.num_faces == 0:
        raise InputError("the reconstruction is empty (no surface found)", hint="check that the views show one object on white")
    if mesh.metadata.get("empty_shape_fallback"):
        job.warn("the model predicted no surface; the mesh is the official fallback shape, not the object")
    job.mesh = mesh


def mesh(models: "Models", job: "Job") -> bool:
    """Surface work before the UV atlas, when asked: isotropic remeshing (``remesh``), then
    repair into a closed surface (``watertight``); False when neither is asked for."""
    from instantmesh_cli.mesh import decimate, make_watertight, remesh
    from instantmesh_cli.texture.stage import DEFAULT_TARGET_FACES

    o = job.options
    if not o.runs_mesh_stage:
        return False
    budget = DEFAULT_TARGET_FACES if o.target_faces is None else o.target_faces
    surface = job.mesh
    if o.remesh:
        surface = remesh(surface, budget or None)
    if o.watertight:
        if o.texture and budget and surface.num_faces > budget:
            # Decimated here, before the repair, so that the texture stage has nothing left to
            # decimate and cannot reopen the repaired surface.
            surface = decimate(surface, budget)
        surface, report = make_watertight(surface)
        if not report.closed:
            job.warn(f"--watertight: {report.boundary_edges} open and {report.nonmanifold_edges} non-manifold "
                     "edges remain; check the mesh before printing it")
    job.mesh = surface
    return True


def texture(models: "Models", job: "Job") -> bool:
    """Refine the colours on the views, then bake a UV texture (or vertex colours with ``texture=False``)."""
    from instantmesh_cli.texture import texture_mesh

    o = job.options
    if not o.runs_texture_stage:
        return False
    job.mesh, job.texture_report = texture_mesh(
        job.mesh,
        job.reconstruction.planes,
        models.reconstructor,
        job.view_tensor[0],
        views=o.views,
        scale=o.scale,
        refine_steps=o.refine_steps if o.refine_texture else 0,
        texture_size=o.texture_size,
        target_faces=o.target_faces,
        uv_method=o.uv_method,
        bake=o.texture,
        progress=lambda done, total: job.report("refine", done, total),
    )
    from instantmesh_cli.export import TEXTURE_PNG_FORMATS

    wants_png = job.outputs.mesh_format in TEXTURE_PNG_FORMATS and (job.outputs.mesh or job.outputs.mesh_to)
    if job.mesh.is_textured and wants_png:
        from instantmesh_cli.exchange.png import encode_png_soon

        # The export's largest CPU cost (the PNG: 0.15 of 0.19 s on the 2-core VM), made while the
        # quality check renders on the GPU; the export takes it from job.texture_png.
        job.texture_png = encode_png_soon(job.mesh.texture)
    return True


def quality(models: "Models", job: "Job") -> bool:
    """How well the mesh, as it will be exported, reproduces its six views: PSNR and silhouette IoU.

    The exported arrays are rendered at the six cameras (the file holds these very arrays;
    rendering them here lets the numbers go into the file's own extras). Suspect below the
    job's --min-psnr / --min-iou.
    """
    o = job.options
    views = job.views if job.views is not None else (job.view_images if len(job.view_images or []) == 6 else None)
    if not o.quality or views is None:
        return False
    from instantmesh_cli.export import export_transform
    from instantmesh_cli.preview.meshfile import from_mesh
    from instantmesh_cli.preview.quality import mesh_quality

    transform = export_transform(job.mesh)
    q = mesh_quality(from_mesh(job.mesh, transform), views, transform, camera_scale=o.scale, device=str(models.device))
    record = q.as_dict()
    record["suspect"] = bool(
        (o.min_psnr is not None and q.psnr < o.min_psnr) or (o.min_iou is not None and q.iou < o.min_iou)
    )
    job.quality = record
    return True


def export(models: "Models", job: "Job") -> bool:
    """Write what ``job.outputs`` asks for that the job has: mesh (file or stream), views, tiles, cut-out."""
    from instantmesh_cli.chain.writing import write_job_outputs

    return write_job_outputs(job, provenance=provenance(job))


def preview(models: "Models", job: "Job") -> bool:
    """A PNG sheet beside the mesh: the input photo and the EXPORTED file rendered at six azimuths."""
    mesh_file = job.outputs.mesh
    if not job.options.preview or mesh_file is None or not mesh_file.exists():
        return False
    from instantmesh_cli.chain.writing import save_png
    from instantmesh_cli.preview.sheet import preview_sheet

    photo = job.prepared.image if job.prepared is not None else None
    sheet = preview_sheet(mesh_file, input_image=photo, device=str(models.device))
    job.files.append(save_png(sheet, mesh_file.with_name(f"{mesh_file.stem}_preview.png")))
    return True


def provenance(job: "Job") -> dict:
    """What made this output, recorded in it: the tool, the options, this image's seed. Nothing time-dependent."""
    from instantmesh_cli.version import __version__

    record = {"generator": f"imesh {__version__}", "seed": job.seed, **job.options.provenance()}
    if job.quality is not None:
        record["quality"] = job.quality
    return record


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[["Models", "Job"], "bool | None"]
    group: Group
    loads: tuple[str, ...] = ()  # the models a load stage loads ("multiview", "reconstruction")


READ = Stage("read", read, "front")
READ_VIEWS = Stage("read", read_views, "front")
PREPARE = Stage("prepare", prepare, "front")
LOAD = Stage("load", load, "gpu", ("multiview", "reconstruction"))
LOAD_MULTIVIEW = Stage("load", load_multiview, "gpu", ("multiview",))
LOAD_RECONSTRUCTION = Stage("load", load_reconstruction, "gpu", ("reconstruction",))
MULTIVIEW = Stage("multiview", multiview, "gpu")
RECONSTRUCT = Stage("reconstruct", reconstruct, "gpu")
MESH = Stage("mesh", mesh, "back")
TEXTURE = Stage("texture", texture, "back")
QUALITY = Stage("quality", quality, "back")
EXPORT = Stage("export", export, "back")
PREVIEW = Stage("preview", preview, "back")

# The plans the drivers run; each is a slice of the one chain.
PHOTO_TO_MESH = (READ, PREPARE, LOAD, MULTIVIEW, RECONSTRUCT, MESH, TEXTURE, QUALITY, EXPORT, PREVIEW)  # generate, the API, bench, server
PHOTO_TO_CUTOUT = (READ, PREPARE, EXPORT)  # imesh prepare
PHOTO_TO_VIEWS = (READ, PREPARE, LOAD_MULTIVIEW, MULTIVIEW, EXPORT)  # imesh multiview
VIEWS_TO_MESH = (READ_VIEWS, LOAD_RECONSTRUCTION, RECONSTRUCT, MESH, TEXTURE, QUALITY, EXPORT, PREVIEW)  # imesh reconstruct


def describe(exc: BaseException) -> str:
    """One line for a failed job: our own errors as they are, out-of-memory with the options that help."""
    if isinstance(exc, ImeshError):
        return str(exc)
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "out of GPU memory; try --low-vram, a smaller --texture-size, or --model instant-mesh-base"
    return f"{type(exc).__name__}: {exc}"
