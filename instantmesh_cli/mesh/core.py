"""The :class:`Mesh` value passed between stages, in the model frame, and the measures the other
mesh modules share (face areas).

Model frame (InstantMesh's): right-handed, +z up, the input photo seen from
azimuth 0, i.e. from the +x axis, with image-right = +y. Only
:mod:`instantmesh_cli.export` converts to the exported (glTF) frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh with either vertex colours or a UV-mapped texture.

    - ``vertices``: float32 (N, 3), model frame.
    - ``faces``: int64 (F, 3), counter-clockwise when seen from outside.
    - ``vertex_colors``: float32 (N, 3) in [0, 1], or None.
    - ``uv``: float32 (N, 2) per vertex, origin at the texture's bottom-left
      (OpenGL/OBJ convention); vertices are split along UV seams.
    - ``texture``: uint8 (H, W, 3) image, row 0 at the top (as stored in PNG), so
      texel row ``r`` covers ``v = 1 - (r + 0.5) / H``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    metadata: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.vertex_colors is not None:
            self.vertex_colors = np.ascontiguousarray(self.vertex_colors, dtype=np.float32).reshape(-1, 3)
            if len(self.vertex_colors) != len(self.vertices):
                raise ValueError("vertex_colors must have one row per vertex")
        if self.uv is not None:
            self.uv = np.ascontiguousarray(self.uv, dtype=np.float32).reshape(-1, 2)
            if len(self.uv) != len(self.vertices):
                raise ValueError("uv must have one row per vertex")
        if (self.uv is None) != (self.texture is None):
            raise ValueError("uv and texture come together")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("face index out of range")

    @property
    def num_vertices(self) -> int:
        return int(len(self.vertices))

    @property
    def num_faces(self) -> int:
        return int(len(self.faces))

    @property
    def is_textured(self) -> bool:
        return self.texture is not None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # np.cross is several times slower than this on (N, 3) arrays
    return np.stack(
        [a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2], a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]],
        axis=1,
    )


def face_areas(mesh: Mesh) -> np.ndarray:
    v = mesh.vertices.astype(np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    return 0.5 * np.sqrt((_cross(b - a, c - a) ** 2).sum(axis=1))
