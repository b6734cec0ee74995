"""Wavefront OBJ and MTL text.

Numbers are written with fixed ``%.6f`` formats (``numpy.savetxt``), so the text depends on
the values only. The header names the generator and, as one line of JSON, the provenance.
"""

from __future__ import annotations

import io

import numpy as np

MATERIAL = "material_0"


def header(generator: str, provenance_json: str | None, note: str | None = None) -> list[str]:
    lines = [f"# generator: {generator}"]
    if provenance_json is not None:
        lines.append(f"# provenance: {provenance_json}")
    if note:
        lines.append(f"# {note}")
    return lines


def obj_text(
    head: list[str],
    positions: np.ndarray,
    faces: np.ndarray,
    *,
    vertex_colors: np.ndarray | None = None,
    uv: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
    mtllib: str | None = None,
) -> str:
    """OBJ text. With ``uv``, faces are ``f v/vt`` (``faces`` index positions, ``uv_faces`` index
    ``uv``, both 0-based) and the one material of ``mtllib`` is used; ``vertex_colors`` go on
    the ``v`` lines (sRGB, as OBJ tools expect)."""
    body = io.StringIO()
    lines = list(head)
    if mtllib is not None:
        lines.append(f"mtllib {mtllib}")
    body.write("\n".join(lines) + "\n")
    if vertex_colors is not None:
        np.savetxt(body, np.concatenate([positions, vertex_colors], axis=1), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    else:
        np.savetxt(body, positions, fmt="v %.6f %.6f %.6f")
    if uv is not None:
        assert uv_faces is not None
        np.savetxt(body, uv, fmt="vt %.6f %.6f")
        if mtllib is not None:
            body.write(f"usemtl {MATERIAL}\n")
        corners = np.stack([faces + 1, uv_faces + 1], axis=2).reshape(-1, 6)
        np.savetxt(body, corners, fmt="f %d/%d %d/%d %d/%d")
    else:
        np.savetxt(body, faces + 1, fmt="f %d %d %d")
    return body.getvalue()


def mtl_text(head: list[str], texture_name: str) -> str:
    """A matte material (no specular, opaque) showing ``texture_name`` as its diffuse map."""
    return "\n".join([*head, f"newmtl {MATERIAL}", "Ka 0 0 0", "Kd 1 1 1", "Ks 0 0 0", "Ns 0", "d 1", "illum 1",
                      f"map_Kd {texture_name}"]) + "\n"
