"""Reading any mesh file into the arrays the preview renderer draws.

Frames: glTF files are +Y up by specification, so a GLB / glTF is read with its
node transforms applied (a Z-up model that its exporter stood upright with a node
rotation renders upright). OBJ, PLY and STL carry no frame; they are assumed to be
+Y up with the front on +Z, which is what ``imesh`` writes.

Colour spaces: glTF vertex colours (``COLOR_0``) and ``baseColorFactor`` are linear by
specification; OBJ / PLY vertex colours, OBJ ``Kd`` and every texture image are sRGB.
:class:`PreviewMesh` stores linear multipliers and sRGB textures, so that each part's
colour is ``texture × face colour × vertex colour`` the way viewers combine them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instantmesh_cli.errors import InputError

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
# Shown where a file says nothing about its colour: a warm clay (linear; sRGB 204, 173, 143),
# told apart from the neutral grey background by its hue even where the light makes it as bright.
CLAY_LINEAR = (0.604, 0.420, 0.274)


@dataclass
class PreviewMesh:
    """A triangle mesh in the glTF frame, ready to render.

    - ``positions`` float32 (N, 3); ``faces`` int64 (F, 3); ``normals`` float32 (F, 3, 3),
      one per face corner (:func:`crease_normals`), or None until :meth:`corner_normals` first
      needs them (shading does; the unlit quality renders never pay for them).
    - ``vertex_colors`` float32 (N, 3) and ``face_colors`` float32 (F, 3): linear
      multipliers (ones where the file has none).
    - ``uv`` float32 (N, 2), origin bottom-left, or None; ``textures`` sRGB uint8 (H, W, 3)
      images, row 0 at the top; ``face_texture`` int32 (F,): index into ``textures``, -1 = none.
    - ``center``, ``scale``: ``positions = (file_positions - center) * scale`` (the identity
      when loaded with ``normalize=False``).
    """

    positions: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None
    vertex_colors: np.ndarray
    face_colors: np.ndarray
    uv: np.ndarray | None
    textures: list[np.ndarray]
    face_texture: np.ndarray
    center: np.ndarray
    scale: float

    def corner_normals(self) -> np.ndarray:
        if self.normals is None:
            self.normals = crease_normals(self.positions, self.faces)
        return self.normals

    @property
    def num_faces(self) -> int:
        return int(len(self.faces))

    @property
    def radius(self) -> float:
        """Distance from the origin to the farthest vertex (what the cameras are framed on)."""
        return float(np.sqrt((self.positions.astype(np.float64) ** 2).sum(axis=1).max())) if len(self.positions) else 0.0


def _linear(srgb01: np.ndarray) -> np.ndarray:
    from instantmesh_cli.export import srgb_to_linear

    return srgb_to_linear(srgb01).astype(np.float32)


def _rgb01(values) -> np.ndarray:
    """uint8 / uint16 / float colour arrays (RGB or RGBA) → float RGB in [0, 1]."""
    arr = np.asarray(values)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(arr.dtype, 1.0)
    return np.clip(arr[..., :3].astype(np.float64) / scale, 0.0, 1.0)


@dataclass
class _Part:
    positions: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray
    face_colors: np.ndarray
    uv: np.ndarray | None
    texture: np.ndarray | None


def _part(geom, transform: np.ndarray, gltf: bool) -> _Part | None:
    import trimesh

    if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
        return None  # point clouds, paths: nothing to draw
    v = np.asarray(geom.vertices, np.float64)
    positions = v @ transform[:3, :3].T + transform[:3, 3]
    faces = np.asarray(geom.faces, np.int64)
    if np.linalg.det(transform[:3, :3]) < 0:
        faces = faces[:, ::-1]  # a mirroring node flips the winding; keep the normals outward
    n, f = len(positions), len(faces)
    vertex_colors = np.ones((n, 3), np.float32)
    face_colors = np.ones((f, 3), np.float32)
    uv = texture = None
    visual = geom.visual
    colored = False
    if getattr(visual, "kind", None) == "texture" or hasattr(visual, "material"):
        material = getattr(visual, "material", None)
        image = getattr(material, "baseColorTexture", None)
        if image is None and not hasattr(material, "baseColorFactor"):
            image = getattr(material, "image", None)
        factor = getattr(material, "baseColorFactor", None)
        if factor is not None:  # glTF: linear
            face_colors[:] = _rgb01(factor).astype(np.float32)
            colored = True
        elif getattr(material, "diffuse", None) is not None:  # OBJ Kd: sRGB
            face_colors[:] = _linear(_rgb01(material.diffuse))
            colored = True
        raw_uv = getattr(visual, "uv", None)
        if image is not None and raw_uv is not None and len(raw_uv) == n:
            uv = np.asarray(raw_uv, np.float32)
            texture = np.array(image.convert("RGB"), np.uint8)  # a writable copy: torch wraps it
            colored = True
        attrs = getattr(visual, "vertex_attributes", None)
        if attrs is not None and "color" in attrs and len(attrs["color"]) == n:
            rgb = _rgb01(attrs["color"])
            vertex_colors = (rgb if gltf else _linear(rgb)).astype(np.float32)
            colored = True
    elif getattr(visual, "kind", None) == "vertex":
        rgb = _rgb01(visual.vertex_colors)
        vertex_colors = (rgb if gltf else _linear(rgb)).astype(np.float32)
        colored = True
    elif getattr(visual, "kind", None) == "face":
        rgb = _rgb01(visual.face_colors)
        face_colors = (rgb if gltf else _linear(rgb)).astype(np.float32)
        colored = True
    if not colored:
        face_colors[:] = CLAY_LINEAR
    return _Part(positions, faces, vertex_colors, face_colors, uv, texture)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def load_mesh(path: str | Path, *, normalize: bool = True) -> PreviewMesh:
    """Read a GLB / glTF / OBJ / PLY / STL file into a :class:`PreviewMesh` (glTF frame).

    ``normalize``: centre the bounding box at the origin and scale its longest side to 1;
    ``False`` keeps the file's coordinates (the quality check needs those).
    Every problem a user can fix raises :class:`InputError` with one line.
    """
    import trimesh

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a mesh file")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"{path}: not a mesh file this reads (use {', '.join(MESH_SUFFIXES)})")
    try:
        scene = trimesh.load(path, force="scene", process=False)
    except Exception as exc:  # trimesh raises many kinds of errors on bad files
        raise InputError(f"cannot read {path} as a mesh: {_one_line(exc)}") from None
    gltf = suffix in (".glb", ".gltf")
    parts: list[_Part] = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry.get(name)
        if geom is not None:
            part = _part(geom, np.asarray(transform, np.float64), gltf)
            if part is not None:
                parts.append(part)
    if not parts:
        raise InputError(f"{path} has no triangles")
    mesh = _combine(parts)
    if not np.isfinite(mesh.positions).all():
        raise InputError(f"{path} has vertices that are not finite numbers")
    if normalize:
        mesh = normalized(mesh)
        if mesh.scale == 0:
            raise InputError(f"{path}: every vertex is at the same point")
    return mesh


def _combine(parts: list[_Part]) -> PreviewMesh:
    offsets = np.cumsum([0] + [len(p.positions) for p in parts])
    positions = np.concatenate([p.positions for p in parts]).astype(np.float32)
    faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets)])
    textures: list[np.ndarray] = []
    face_texture = []
    for p in parts:
        index = -1
        if p.texture is not None:
            index = len(textures)
            textures.append(p.texture)
        face_texture.append(np.full(len(p.faces), index, np.int32))
    uv = None
    if textures:
        uv = np.concatenate([p.uv if p.uv is not None else np.zeros((len(p.positions), 2), np.float32) for p in parts])
    return PreviewMesh(
        positions=positions,
        faces=faces,
        normals=None,
        vertex_colors=np.concatenate([p.vertex_colors for p in parts]).astype(np.float32),
        face_colors=np.concatenate([p.face_colors for p in parts]).astype(np.float32),
        uv=uv,
        textures=textures,
        face_texture=np.concatenate(face_texture),
        center=np.zeros(3, np.float32),
        scale=1.0,
    )


def crease_normals(positions: np.ndarray, faces: np.ndarray, crease_deg: float = 60.0) -> np.ndarray:
    """(F, 3, 3) corner normals: smooth across edges whose faces meet at under ``crease_deg``, sharp above.

    The same for every format, whatever normals a file carries: curved scans and marching-cubes
    surfaces shade smoothly, while a box's sides stay flat instead of shading as one blob.
    Each corner averages (area-weighted) the normals of the faces around its position that
    lie within ``crease_deg`` of its own face; positions are welded first, so UV seams do not
    crease.
    """
    from instantmesh_cli.export import weld_positions

    f = len(faces)
    if f == 0:
        return np.zeros((0, 3, 3), np.float32)
    v = positions.astype(np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])  # length = 2 × area
    length = np.linalg.norm(fn, axis=1, keepdims=True)
    unit = np.where(length > 0, fn / np.maximum(length, 1e-300), 0.0)
    _, welded = weld_positions(positions)
    corner_vertex = welded[faces.reshape(-1)]
    # Every pair of corners at the same position: counts² pairs per position.
    order = np.argsort(corner_vertex, kind="stable")
    counts = np.bincount(corner_vertex)
    starts = np.cumsum(counts) - counts
    k = counts[corner_vertex[order]]
    total = int(k.sum())
    rep = np.repeat(np.arange(len(order)), k)
    offset = np.arange(total) - np.repeat(np.cumsum(k) - k, k)
    a = order[rep] // 3
    b = order[starts[corner_vertex[order[rep]]] + offset] // 3
    keep = (unit[a] * unit[b]).sum(axis=1) >= np.cos(np.radians(crease_deg))
    corner = order[rep][keep]
    acc = np.stack([np.bincount(corner, weights=fn[b[keep], i], minlength=3 * f) for i in range(3)], axis=1)
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    own = np.repeat(unit, 3, axis=0)
    out = np.where(norm > 0, acc / np.maximum(norm, 1e-300), own)
    return out.reshape(f, 3, 3).astype(np.float32)


def normalized(mesh: PreviewMesh) -> PreviewMesh:
    """The mesh centred on its bounding box, longest side 1 (``scale`` 0 for a single point)."""
    lo, hi = mesh.positions.min(axis=0), mesh.positions.max(axis=0)
    center = ((lo + hi) / 2).astype(np.float64)
    extent = float((hi - lo).max())
    scale = 1.0 / extent if extent > 0 else 0.0
    positions = ((mesh.positions - center) * scale).astype(np.float32)
    # Composed with any earlier normalisation, so center/scale always relate to the file.
    total_center = mesh.center + center / mesh.scale if mesh.scale else mesh.center
    return PreviewMesh(
        positions, mesh.faces, mesh.normals, mesh.vertex_colors, mesh.face_colors, mesh.uv, mesh.textures,
        mesh.face_texture, np.asarray(total_center, np.float32), mesh.scale * scale,
    )


def from_arrays(
    positions: np.ndarray,
    faces: np.ndarray,
    *,
    vertex_colors: np.ndarray | None = None,
    uv: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    color: tuple[float, float, float] | None = None,
) -> PreviewMesh:
    """A :class:`PreviewMesh` from arrays already in the glTF frame (not normalised).

    Colours are sRGB as in :class:`~instantmesh_cli.mesh.Mesh`: ``vertex_colors`` (N, 3) in
    [0, 1], or ``uv`` (N, 2) + ``texture`` (H, W, 3) uint8, or one flat ``color``; none → clay.
    """
    positions = np.asarray(positions, np.float32).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    n, f = len(positions), len(faces)
    vc = _linear(np.asarray(vertex_colors)) if vertex_colors is not None else np.ones((n, 3), np.float32)
    if color is not None:
        fc = np.tile(_linear(np.asarray(color, np.float64)), (f, 1)).astype(np.float32)
    elif vertex_colors is None and texture is None:
        fc = np.tile(np.asarray(CLAY_LINEAR, np.float32), (f, 1))
    else:
        fc = np.ones((f, 3), np.float32)
    part = _Part(positions, faces, vc, fc, None if uv is None else np.asarray(uv, np.float32),
                 None if texture is None else np.asarray(texture, np.uint8))
    return _combine([part])


def from_mesh(mesh, transform=None) -> PreviewMesh:
    """A model-frame :class:`~instantmesh_cli.mesh.Mesh` as it would be exported (not yet normalised).

    ``transform``: the :class:`~instantmesh_cli.export.ExportTransform` to place it with
    (default ``export_transform(mesh)``, what ``export_mesh`` uses at ``size=1``). For
    outputs that never reach a file here (``-o -``) or a check before writing one.
    """
    from instantmesh_cli.export import export_transform

    transform = transform if transform is not None else export_transform(mesh)
    positions = transform.apply(mesh.vertices)
    if mesh.is_textured:
        return from_arrays(positions, mesh.faces, uv=mesh.uv, texture=mesh.texture)
    return from_arrays(positions, mesh.faces, vertex_colors=mesh.vertex_colors)
