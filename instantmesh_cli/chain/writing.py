"""The export stage's writes: every output atomic, every failure one line naming the user's path."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from instantmesh_cli.errors import ImeshError

if TYPE_CHECKING:
    from PIL import Image

    from instantmesh_cli.chain.job import Job


def _cannot_write(path: Path, exc: OSError) -> ImeshError:
    return ImeshError(f"cannot write {path}: {exc.strerror or exc}")


def png_bytes(image: "Image.Image") -> bytes:
    """PNG bytes of the pixels alone: the source's ICC profile, dpi or text chunks would make
    the same job write different bytes from different photos' metadata. RGB and RGBA (every
    image the chain writes) go through the multi-core encoder; other modes through Pillow."""
    from instantmesh_cli.exchange.png import COMPRESS_LEVEL, encode_png

    if image.mode in ("RGB", "RGBA"):
        import numpy as np

        return encode_png(np.asarray(image))
    bare = image.copy()
    bare.info.clear()
    buf = io.BytesIO()
    bare.save(buf, format="PNG", compress_level=COMPRESS_LEVEL)
    return buf.getvalue()


def save_png(image: "Image.Image", target: Path) -> Path:
    from instantmesh_cli.fileio import write_bytes_atomic

    try:
        return write_bytes_atomic(target, png_bytes(image))
    except OSError as exc:
        raise _cannot_write(target, exc) from None


def write_job_outputs(job: "Job", *, provenance: dict | None = None) -> bool:
    """Write what ``job.outputs`` asks for and the job has; the paths land in ``job.files`` (mesh first).
    False when nothing was asked for (results kept in memory)."""
    from instantmesh_cli.multiview.grid import split_grid, tile_filename

    out = job.outputs
    if not (out.mesh or out.mesh_to or out.views or out.cutout or out.cutout_to):
        return False
    if job.mesh is not None and (out.mesh is not None or out.mesh_to is not None):
        from instantmesh_cli.export import encode_glb, export_mesh

        png = job.texture_png.result() if job.texture_png is not None else None
        if out.mesh_to is not None:
            out.mesh_to(encode_glb(job.mesh, provenance=provenance, texture_png=png))
        else:
            try:
                job.files.extend(export_mesh(job.mesh, out.mesh, out.mesh_format, provenance=provenance,
                                             texture_png=png))
            except OSError as exc:
                raise _cannot_write(out.mesh, exc) from None
    if job.views is not None and out.views is not None:
        job.files.append(save_png(job.views, out.views))
        if out.view_tiles:
            for i, tile in enumerate(split_grid(job.views)):
                job.files.append(save_png(tile, out.views.with_name(tile_filename(out.views.stem, i))))
    if job.prepared is not None and (out.cutout is not None or out.cutout_to is not None):
        cutout = job.prepared.image
        if out.cutout_size is not None and cutout.size[0] != out.cutout_size:
            from PIL import Image

            # Pillow resamples RGBA with premultiplied alpha: no colour bleeds in from transparent pixels.
            cutout = cutout.resize((out.cutout_size, out.cutout_size), Image.Resampling.LANCZOS)
        if out.cutout is not None:
            job.files.append(save_png(cutout, out.cutout))
        if out.cutout_to is not None:
            out.cutout_to(png_bytes(cutout))
    return True
