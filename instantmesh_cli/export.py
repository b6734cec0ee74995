"""Writing meshes: the one axis conversion to the exported frame, and GLB / OBJ / PLY.

Exported frame (glTF 2.0, used for every format): +Y up, the input photo's
viewpoint on +Z (the asset faces +Z), +X to the viewer's right, right-handed,
metres, centred, longest side ``size`` metres.

From the model frame (+z up, viewer of the input photo on +x, image-right = +y):
glTF X = model y, glTF Y = model z, glTF Z = model x. That is a cyclic
permutation of the axes, a proper rotation (det +1), so face winding is kept.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from instantmesh_cli.fileio import atomic_path
from instantmesh_cli.mesh import Mesh

MeshFormat = Literal["glb", "obj", "ply"]
FORMATS: tuple[str, ...] = ("glb", "obj", "ply")

# Columns of the model-frame coordinates that become glTF X, Y, Z.
_MODEL_TO_GLTF_AXES = [1, 2, 0]
_GLTF_TO_MODEL_AXES = [2, 0, 1]


@dataclass(frozen=True)
class ExportTransform:
    """gltf = (model[:, [1, 2, 0]] - center) * scale."""

    center: np.ndarray
    scale: float

    def apply(self, model_points: np.ndarray) -> np.ndarray:
        return ((np.asarray(model_points)[:, _MODEL_TO_GLTF_AXES] - self.center) * self.scale).astype(np.float32)

    def invert(self, gltf_points: np.ndarray) -> np.ndarray:
        return (np.asarray(gltf_points) / self.scale + self.center)[:, _GLTF_TO_MODEL_AXES].astype(np.float32)


def export_transform(mesh: Mesh, size: float | None = 1.0) -> ExportTransform:
    """Centre the bounding box at the origin; scale its longest side to ``size`` metres (None keeps scale)."""
    rotated = mesh.vertices[:, _MODEL_TO_GLTF_AXES]
    if len(rotated) == 0:
        return ExportTransform(np.zeros(3, np.float32), 1.0)
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    center = ((lo + hi) / 2).astype(np.float32)
    extent = float((hi - lo).max())
    scale = 1.0 if size is None or extent <= 0 else size / extent
    return ExportTransform(center, scale)


def to_trimesh(mesh: Mesh, transform: ExportTransform):
    """A ``trimesh.Trimesh`` in the exported frame (vertex order kept, so UV seams survive)."""
    import trimesh
    from PIL import Image

    vertices = transform.apply(mesh.vertices)
    if mesh.is_textured:
        material = trimesh.visual.material.PBRMaterial(
            name="material_0",
            baseColorTexture=Image.fromarray(mesh.texture, "RGB"),
            baseColorFactor=[255, 255, 255, 255],
            metallicFactor=0.0,
            roughnessFactor=1.0,
            doubleSided=False,
        )
        visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
    elif mesh.vertex_colors is not None:
        rgba = np.concatenate(
            [np.clip(np.round(mesh.vertex_colors * 255), 0, 255), np.full((len(vertices), 1), 255)], axis=1
        ).astype(np.uint8)
        visual = trimesh.visual.ColorVisuals(vertex_colors=rgba)
    else:
        visual = None
    return trimesh.Trimesh(vertices=vertices, faces=mesh.faces, visual=visual, process=False)


def sample_texture(mesh: Mesh) -> np.ndarray:
    """Per-vertex colours (float [0, 1]) read from the texture at each vertex's UV (nearest texel)."""
    assert mesh.texture is not None and mesh.uv is not None
    h, w = mesh.texture.shape[:2]
    cols = np.clip(np.floor(mesh.uv[:, 0] * w), 0, w - 1).astype(np.int64)
    rows = np.clip(np.floor((1.0 - mesh.uv[:, 1]) * h), 0, h - 1).astype(np.int64)
    return mesh.texture[rows, cols].astype(np.float32) / 255.0


def encode_glb(mesh: Mesh, size: float | None = 1.0) -> bytes:
    """The GLB file as bytes (for ``-o -``)."""
    return to_trimesh(mesh, export_transform(mesh, size)).export(file_type="glb")


def export_mesh(mesh: Mesh, path: str | Path, fmt: MeshFormat | None = None, size: float | None = 1.0) -> list[Path]:
    """Write ``mesh`` to ``path`` atomically; return every file written (OBJ adds .mtl and .png)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".").lower()) or "glb"
    if fmt not in FORMATS:
        from instantmesh_cli.errors import UsageError

        raise UsageError(f"unknown output format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    transform = export_transform(mesh, size)
    if fmt == "glb":
        data = to_trimesh(mesh, transform).export(file_type="glb")
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return [path]
    if fmt == "ply":
        flat = mesh
        if mesh.is_textured:
            flat = Mesh(mesh.vertices, mesh.faces, vertex_colors=sample_texture(mesh))
        data = to_trimesh(flat, transform).export(file_type="ply")
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return [path]
    return _write_obj(mesh, transform, path)


def _write_obj(mesh: Mesh, transform: ExportTransform, path: Path) -> list[Path]:
    """OBJ (+ MTL + PNG side by side when textured). Vertex colours go on the ``v`` lines."""
    vertices = transform.apply(mesh.vertices)
    lines = [f"# written by imesh", ]
    written: list[Path] = []
    stem = path.stem
    if mesh.is_textured:
        from PIL import Image

        png_path = path.with_name(f"{stem}.png")
        mtl_path = path.with_name(f"{stem}.mtl")
        buf = io.BytesIO()
        Image.fromarray(mesh.texture, "RGB").save(buf, format="PNG")
        mtl = (
            "newmtl material_0\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nNs 0\nillum 1\n"
            f"map_Kd {png_path.name}\n"
        )
        with atomic_path(png_path) as tmp:
            tmp.write_bytes(buf.getvalue())
        with atomic_path(mtl_path) as tmp:
            tmp.write_text(mtl)
        written += [png_path, mtl_path]
        lines.append(f"mtllib {mtl_path.name}")
    body = io.StringIO()
    body.write("\n".join(lines) + "\n")
    if mesh.vertex_colors is not None and not mesh.is_textured:
        np.savetxt(body, np.concatenate([vertices, mesh.vertex_colors], axis=1), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    else:
        np.savetxt(body, vertices, fmt="v %.6f %.6f %.6f")
    faces1 = mesh.faces + 1
    if mesh.is_textured:
        np.savetxt(body, mesh.uv, fmt="vt %.6f %.6f")
        body.write("usemtl material_0\n")
        np.savetxt(body, np.repeat(faces1, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
    else:
        np.savetxt(body, faces1, fmt="f %d %d %d")
    with atomic_path(path) as tmp:
        tmp.write_text(body.getvalue())
    return [path, *written]
