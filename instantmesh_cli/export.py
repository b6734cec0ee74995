"""Writing meshes: the one axis conversion to the exported frame, and GLB / OBJ / PLY.

Exported frame (glTF 2.0, used for every format): +Y up, the input photo's
viewpoint on +Z (the asset faces +Z), +X to the viewer's right, right-handed,
metres, centred, longest side ``size`` metres.

From the model frame (+z up, viewer of the input photo on +x, image-right = +y):
glTF X = model y, glTF Y = model z, glTF Z = model x. That is a cyclic
permutation of the axes, a proper rotation (det +1), so face winding is kept.

Colour spaces. Our colours (views, texture, vertex colours) are sRGB-encoded.
- GLB: ``baseColorTexture`` is sRGB by the glTF specification, so the texture is
  stored as it is, in a PNG without colour-space chunks (glTF wants none; see
  :mod:`instantmesh_cli.exchange.png`); ``COLOR_0`` is linear
  by the specification, so vertex colours are converted sRGB → linear (and stored
  with 16 bits, enough levels in the darks). Every
  primitive gets a matte PBR material (metallic 0, roughness 1): without one, viewers
  use glTF's default material, which is fully metallic and renders dark.
  Smooth vertex normals are written (computed on the welded surface, so UV seams
  do not show as shading creases); without them viewers shade flat.
- OBJ (``v x y z r g b``) and PLY vertex colours: sRGB, as those tools expect.

Every file names its generator (``imesh <version>``) and, when the caller passes one, a
provenance record (model, seed, options…) serialised as JSON with sorted keys: GLB in
``asset.extras.provenance``, OBJ / MTL and PLY in header comments. The same mesh and
provenance give byte-identical files in any process; nothing time-dependent is written,
and ``Mesh.metadata`` (timings and the like) is not exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from instantmesh_cli.exchange import glb as _glb
from instantmesh_cli.exchange import obj as _obj
from instantmesh_cli.exchange import ply as _ply
from instantmesh_cli.exchange.png import encode_png, texture_image
from instantmesh_cli.exchange.provenance import generator, normalize_provenance, provenance_json
from instantmesh_cli.fileio import atomic_path
from instantmesh_cli.mesh import Mesh

MeshFormat = Literal["glb", "obj", "ply"]
FORMATS: tuple[str, ...] = ("glb", "obj", "ply")
# The formats that hold a textured mesh's texture as a PNG (embedded, or beside an OBJ); PLY bakes it
# into vertex colours. What ``export_mesh(texture_png=)`` is for.
TEXTURE_PNG_FORMATS: tuple[str, ...] = ("glb", "obj")
TEXTURE_SUFFIX = "_texture.png"  # OBJ side file: <stem>_texture.png (never clobbers an input <stem>.png)

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


# ------------------------------------------------------------------------------ colour helpers


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def _to_bytes(colors01: np.ndarray) -> np.ndarray:
    """(N, 3) floats in [0, 1] → (N, 4) uint8 RGBA, opaque."""
    rgb = np.clip(np.round(np.asarray(colors01, dtype=np.float64) * 255), 0, 255)
    return np.concatenate([rgb, np.full((len(rgb), 1), 255)], axis=1).astype(np.uint8)


def vertex_colors_from_gltf(tm) -> np.ndarray | None:
    """sRGB vertex colours (N, 3) in [0, 1] of a trimesh loaded from one of our GLBs (COLOR_0 is linear)."""
    visual = tm.visual
    rgba = None
    if getattr(visual, "kind", None) == "vertex":
        rgba = visual.vertex_colors
    elif hasattr(visual, "vertex_attributes") and "color" in visual.vertex_attributes:
        rgba = visual.vertex_attributes["color"]
    if rgba is None:
        return None
    rgba = np.asarray(rgba)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(rgba.dtype, 1.0)
    return linear_to_srgb(rgba[:, :3] / scale).astype(np.float32)


# ------------------------------------------------------------------------------ geometry helpers


def weld_positions(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique positions, index of each vertex's position): exact duplicates only (UV-seam copies).

    Rows are compared as raw bytes (one sort of 12-byte keys: 3x faster than ``np.unique(axis=0)``,
    which compares field by field); seam copies are bit-for-bit copies, so nothing is missed.
    """
    v = np.ascontiguousarray(vertices)
    keys = v.view(np.dtype((np.void, v.dtype.itemsize * v.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return v[first], inverse.reshape(-1)


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, computed on the welded surface so seam copies share normals."""
    if len(faces) == 0:
        return np.tile(np.array([[0.0, 0.0, 1.0]], np.float32), (len(vertices), 1))
    _, inverse = weld_positions(vertices)
    v = vertices.astype(np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    corners = inverse[faces].reshape(-1)  # each face's three welded vertices, face by face
    count = int(inverse.max()) + 1
    acc = np.stack([np.bincount(corners, weights=np.repeat(fn[:, k], 3), minlength=count) for k in range(3)], 1)
    n = acc[inverse]
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 0, n / np.maximum(length, 1e-30), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


def _matte_material(**kw):
    import trimesh

    return trimesh.visual.material.PBRMaterial(
        name="material_0", baseColorFactor=[255, 255, 255, 255], metallicFactor=0.0, roughnessFactor=1.0,
        doubleSided=False, **kw,
    )


def to_trimesh(mesh: Mesh, transform: ExportTransform, *, gltf: bool = False):
    """A ``trimesh.Trimesh`` in the exported frame (vertex order kept, so UV seams survive).

    ``gltf=True`` prepares it for GLB: matte PBR material always, smooth normals; vertex
    colours are added afterwards as 16-bit linear ``COLOR_0`` (``exchange.glb``).
    """
    import trimesh

    vertices = transform.apply(mesh.vertices)
    kwargs = {}
    if gltf:
        kwargs["vertex_normals"] = smooth_normals(vertices, mesh.faces)
    if mesh.is_textured:
        # For GLB, finish_glb puts our own PNG bytes in place of trimesh's image; a 1×1
        # stand-in spares encoding the full texture twice (0.3-0.7 s at 1024²).
        texture = np.zeros((1, 1, 3), np.uint8) if gltf else mesh.texture
        material = _matte_material(baseColorTexture=texture_image(texture))
        visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
    elif gltf:  # vertex colours (if any) are added by _glb_bytes as 16-bit linear COLOR_0
        visual = trimesh.visual.TextureVisuals(material=_matte_material())
    elif mesh.vertex_colors is not None:
        visual = trimesh.visual.ColorVisuals(vertex_colors=_to_bytes(mesh.vertex_colors))
    else:
        visual = None
    return trimesh.Trimesh(vertices=vertices, faces=mesh.faces, visual=visual, process=False, **kwargs)


def sample_texture(mesh: Mesh) -> np.ndarray:
    """Per-vertex colours (float [0, 1]) read from the texture at each vertex's UV (nearest texel)."""
    assert mesh.texture is not None and mesh.uv is not None
    h, w = mesh.texture.shape[:2]
    cols = np.clip(np.floor(mesh.uv[:, 0] * w), 0, w - 1).astype(np.int64)
    rows = np.clip(np.floor((1.0 - mesh.uv[:, 1]) * h), 0, h - 1).astype(np.int64)
    return mesh.texture[rows, cols].astype(np.float32) / 255.0


def _texture_png(mesh: Mesh, texture_png: bytes | None) -> bytes:
    return texture_png if texture_png is not None else encode_png(mesh.texture)


def _glb_bytes(mesh: Mesh, transform: ExportTransform, provenance: dict[str, Any] | None,
               texture_png: bytes | None = None) -> bytes:
    data = to_trimesh(mesh, transform, gltf=True).export(file_type="glb", include_normals=True)
    colors = None
    if mesh.vertex_colors is not None and not mesh.is_textured:
        colors = srgb_to_linear(mesh.vertex_colors)
    return _glb.finish_glb(
        data, generator=generator(), provenance=provenance,
        images=[_texture_png(mesh, texture_png)] if mesh.is_textured else None, color_0=colors,
    )


def encode_glb(mesh: Mesh, size: float | None = 1.0, *, provenance: Mapping[str, Any] | None = None,
               texture_png: bytes | None = None) -> bytes:
    """The GLB file as bytes (for ``-o -``); ``provenance`` and ``texture_png`` as for :func:`export_mesh`."""
    return _glb_bytes(mesh, export_transform(mesh, size), normalize_provenance(provenance), texture_png)


def vertex_colored(mesh: Mesh) -> Mesh:
    """A textured mesh as a welded, vertex-coloured one (its own vertex colours, else texture lookups)."""
    if not mesh.is_textured:
        return mesh
    from instantmesh_cli.mesh import merge_duplicate_vertices

    colors = mesh.vertex_colors if mesh.vertex_colors is not None else sample_texture(mesh)
    return merge_duplicate_vertices(Mesh(mesh.vertices, mesh.faces, colors, metadata=dict(mesh.metadata)))


def export_mesh(
    mesh: Mesh,
    path: str | Path,
    fmt: MeshFormat | None = None,
    size: float | None = 1.0,
    *,
    provenance: Mapping[str, Any] | None = None,
    texture_png: bytes | None = None,
) -> list[Path]:
    """Write ``mesh`` to ``path`` atomically; return every file written (a textured OBJ adds .mtl and .png).

    ``provenance``: how the mesh was made (model, seed, steps, scheduler, options…), a
    JSON-like mapping recorded in the file; keep it free of times and absolute paths, or the
    outputs stop being reproducible. Checked (TypeError / ValueError) before anything is written.
    ``texture_png``: ``encode_png(mesh.texture)``, when the caller has it already (the chain encodes
    it beside the quality check); the same bytes either way.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".").lower()) or "glb"
    if fmt not in FORMATS:
        from instantmesh_cli.errors import UsageError

        raise UsageError(f"unknown output format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    provenance = normalize_provenance(provenance)
    transform = export_transform(mesh, size)
    if fmt == "glb":
        data = _glb_bytes(mesh, transform, provenance, texture_png)
    elif fmt == "ply":
        data = to_trimesh(vertex_colored(mesh), transform).export(file_type="ply")
        comments = [f"generator: {generator()}"]
        if provenance is not None:
            comments.append("provenance: " + _ply.json_for_comment(provenance_json(provenance)))
        data = _ply.with_comments(data, comments)
    else:
        return _write_obj(mesh, transform, path, provenance, texture_png)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return [path]


def _write_obj(mesh: Mesh, transform: ExportTransform, path: Path, provenance: dict[str, Any] | None,
               texture_png: bytes | None = None) -> list[Path]:
    """OBJ (+ MTL + PNG side by side when textured). Vertex colours go on the ``v`` lines.

    A textured mesh is written welded: one ``v`` per position, one ``vt`` per UV vertex,
    ``f v/vt``, so tools see one connected surface rather than charts with cracks.
    """
    vertices = transform.apply(mesh.vertices)
    prov = provenance_json(provenance) if provenance is not None else None
    head = _obj.header(generator(), prov, "glTF frame: +Y up, front +Z, metres")
    if not mesh.is_textured:
        text = _obj.obj_text(head, vertices, mesh.faces, vertex_colors=mesh.vertex_colors)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8", newline="\n")
        return [path]
    png_path = path.with_name(f"{path.stem}{TEXTURE_SUFFIX}")
    mtl_path = path.with_name(f"{path.stem}.mtl")
    positions, pos_index = weld_positions(vertices)
    text = _obj.obj_text(head, positions, pos_index[mesh.faces], uv=mesh.uv, uv_faces=mesh.faces, mtllib=mtl_path.name)
    with atomic_path(png_path) as tmp:
        tmp.write_bytes(_texture_png(mesh, texture_png))
    with atomic_path(mtl_path) as tmp:
        tmp.write_text(_obj.mtl_text(_obj.header(generator(), prov), png_path.name), encoding="utf-8", newline="\n")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return [path, png_path, mtl_path]
