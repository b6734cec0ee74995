"""Export: the one axis conversion, GLB PBR material / texture / colours / normals, OBJ + MTL + PNG, PLY."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from instantmesh_cli.errors import UsageError
from instantmesh_cli.export import (
    encode_glb,
    export_mesh,
    export_transform,
    linear_to_srgb,
    smooth_normals,
    srgb_to_linear,
    vertex_colors_from_gltf,
)
from instantmesh_cli.mesh import Mesh


def sphere(subdivisions=2, radius=0.5):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int64)


def textured_sphere(size=32):
    """A sphere with a UV seam: vertices with x > 0 are split into two UV copies."""
    v, f = sphere()
    uv = (v[:, 1:] + 0.5).astype(np.float32)
    dup = np.flatnonzero(v[:, 0] > 0)
    v2 = np.concatenate([v, v[dup]])
    uv2 = np.concatenate([uv, uv[dup] * 0.5])
    remap = np.arange(len(v))
    remap[dup] = len(v) + np.arange(len(dup))
    f2 = f.copy()
    right = (v[f][:, :, 0] > 0).all(axis=1)
    f2[right] = remap[f[right]]  # faces fully on the right use the copies
    tex = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    colors = (v2 + 1) / 2
    return Mesh(v2, f2, colors, uv2, tex)


def glb_json(data: bytes) -> dict:
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data)
    n = struct.unpack("<I", data[12:16])[0]
    return json.loads(data[20 : 20 + n])


def glb_bin(data: bytes) -> bytes:
    n = struct.unpack("<I", data[12:16])[0]
    m = struct.unpack("<I", data[20 + n : 24 + n])[0]
    return data[28 + n : 28 + n + m]


def glb_image(data: bytes, index: int = 0) -> bytes:
    tree = glb_json(data)
    view = tree["bufferViews"][tree["images"][index]["bufferView"]]
    return glb_bin(data)[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]


def png_chunks(png: bytes) -> list[str]:
    """Chunk types of a PNG, in order, with runs of IDAT counted once."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(png):
        n, kind = struct.unpack(">I4s", png[i : i + 8])
        if not (out and out[-1] == kind.decode() == "IDAT"):
            out.append(kind.decode())
        i += 12 + n
    return out


def load_glb(data: bytes):
    import trimesh

    (tm,) = trimesh.load(io.BytesIO(data), file_type="glb", force="scene", process=False).geometry.values()
    return tm


def test_axis_conversion_is_a_proper_rotation_to_gltf():
    # Model frame: +x toward the input photo's camera, +y image-right, +z up.
    marker = Mesh(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32), np.array([[0, 1, 2]]))
    t = export_transform(marker, size=None)
    out = t.apply(marker.vertices) + t.center
    np.testing.assert_allclose(out[0], [0, 0, 1])  # front → +Z (toward the viewer)
    np.testing.assert_allclose(out[1], [1, 0, 0])  # image-right → +X
    np.testing.assert_allclose(out[2], [0, 1, 0])  # up → +Y
    np.testing.assert_allclose(t.invert(t.apply(marker.vertices)), marker.vertices, atol=1e-6)
    # Centred, longest side 1 m.
    v, f = sphere()
    t = export_transform(Mesh(v * [2, 1, 1] + [3, 0, 0], f))
    g = t.apply(v * [2, 1, 1] + [3, 0, 0])
    np.testing.assert_allclose((g.min(0) + g.max(0)) / 2, 0, atol=1e-6)
    assert np.ptp(g, axis=0).max() == pytest.approx(1.0)


def test_textured_glb_material_texture_uv_and_normals():
    mesh = textured_sphere()
    data = encode_glb(mesh)
    tree = glb_json(data)
    (mat,) = tree["materials"]
    pbr = mat["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == 1.0 and "baseColorTexture" in pbr
    prim = tree["meshes"][0]["primitives"][0]
    assert {"POSITION", "TEXCOORD_0", "NORMAL"} <= set(prim["attributes"]) and "COLOR_0" not in prim["attributes"]
    assert tree["images"][0]["mimeType"] == "image/png"
    tm = load_glb(data)
    img = tm.visual.material.baseColorTexture
    np.testing.assert_array_equal(np.asarray(img.convert("RGB")), mesh.texture)  # sRGB bytes as they are
    # sRGB by glTF's definition: no colour-space chunk of its own (nor anything else but pixels).
    assert png_chunks(glb_image(data)) == ["IHDR", "IDAT", "IEND"] and not img.info
    np.testing.assert_allclose(np.asarray(tm.visual.uv), mesh.uv, atol=1e-6)  # origin bottom-left kept
    np.testing.assert_allclose(tm.vertices, export_transform(mesh).apply(mesh.vertices), atol=1e-6)
    np.testing.assert_array_equal(tm.faces, mesh.faces)
    # Smooth normals, the same on both sides of the UV seam, pointing outward.
    normals = np.asarray(tm.vertex_normals)
    radial = tm.vertices / np.linalg.norm(tm.vertices, axis=1, keepdims=True)
    assert (np.sum(normals * radial, axis=1) > 0.99).all()


def test_vertex_coloured_glb_is_linear_and_matte():
    v, f = sphere()
    colors = np.clip((v + 0.5), 0, 1).astype(np.float32)
    data = encode_glb(Mesh(v, f, colors))
    tree = glb_json(data)
    assert tree["materials"][0]["pbrMetallicRoughness"]["metallicFactor"] == 0.0
    assert "COLOR_0" in tree["meshes"][0]["primitives"][0]["attributes"]
    acc = tree["accessors"][tree["meshes"][0]["primitives"][0]["attributes"]["COLOR_0"]]
    assert acc["componentType"] == 5123 and acc["normalized"] and acc["type"] == "VEC4" and acc["count"] == len(v)
    view = tree["bufferViews"][acc["bufferView"]]
    assert view["byteLength"] == 8 * len(v) and view["byteOffset"] % 4 == 0
    assert all(bv["byteOffset"] + bv["byteLength"] <= tree["buffers"][0]["byteLength"] for bv in tree["bufferViews"])
    tm = load_glb(data)
    raw = np.asarray(tm.visual.vertex_attributes["color"])[:, :3] / 65535.0
    np.testing.assert_allclose(raw, srgb_to_linear(colors), atol=0.5 / 65535 + 1e-7)  # COLOR_0 is linear
    # 16 bits keep the darks: the round trip is exact to well under one 8-bit step everywhere.
    np.testing.assert_allclose(vertex_colors_from_gltf(tm), colors, atol=1e-3)
    np.testing.assert_allclose(tm.vertices, export_transform(Mesh(v, f)).apply(v), atol=1e-6)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(colors)), colors, atol=1e-6)


def test_textured_obj_mtl_png_side_by_side(tmp_path):
    import trimesh

    mesh = textured_sphere()
    files = export_mesh(mesh, tmp_path / "thing.obj")
    assert [p.name for p in files] == ["thing.obj", "thing_texture.png", "thing.mtl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.mtl", "thing.obj", "thing_texture.png"]  # no temp files
    assert "map_Kd thing_texture.png" in (tmp_path / "thing.mtl").read_text()
    text = (tmp_path / "thing.obj").read_text()
    assert "mtllib thing.mtl" in text
    n_v = text.count("\nv ")
    assert n_v == len(np.unique(mesh.vertices, axis=0)) < mesh.num_vertices  # welded positions
    assert text.count("\nvt ") == mesh.num_vertices
    png = Image.open(tmp_path / "thing_texture.png")
    np.testing.assert_array_equal(np.asarray(png), mesh.texture)  # row 0 = top, as OBJ's vt (origin bottom-left) wants
    tm = trimesh.load(tmp_path / "thing.obj", process=False)
    assert isinstance(tm.visual, trimesh.visual.TextureVisuals)
    assert len(tm.faces) == mesh.num_faces
    # Every loaded corner has the position and UV of the original corner.
    t = export_transform(mesh)
    np.testing.assert_allclose(tm.vertices[tm.faces], t.apply(mesh.vertices)[mesh.faces], atol=2e-6)
    np.testing.assert_allclose(tm.visual.uv[tm.faces], mesh.uv[mesh.faces], atol=2e-6)


def test_vertex_coloured_obj_and_ply(tmp_path):
    import trimesh

    v, f = sphere()
    colors = ((v + 0.5) * 0.9).astype(np.float32)
    mesh = Mesh(v, f, colors)
    assert export_mesh(mesh, tmp_path / "a.obj") == [tmp_path / "a.obj"]
    first = next(line for line in (tmp_path / "a.obj").read_text().splitlines() if line.startswith("v "))
    assert len(first.split()) == 7  # v x y z r g b (sRGB)
    export_mesh(mesh, tmp_path / "a.ply")
    tm = trimesh.load(tmp_path / "a.ply", process=False)
    np.testing.assert_allclose(tm.visual.vertex_colors[:, :3] / 255.0, colors, atol=0.5 / 255 + 1e-6)


def test_textured_mesh_to_ply_is_welded_with_vertex_colours(tmp_path):
    import trimesh

    mesh = textured_sphere()
    export_mesh(mesh, tmp_path / "t.ply")
    tm = trimesh.load(tmp_path / "t.ply", process=False)
    assert len(tm.vertices) == len(np.unique(mesh.vertices, axis=0)) and len(tm.faces) == mesh.num_faces
    assert tm.is_watertight
    expect = (export_transform(mesh).invert(np.asarray(tm.vertices)) + 1) / 2
    np.testing.assert_allclose(tm.visual.vertex_colors[:, :3] / 255.0, expect, atol=1 / 255 + 1e-6)


def test_smooth_normals_and_unknown_format(tmp_path):
    v, f = sphere(3)
    n = smooth_normals(v, f)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    assert (np.sum(n * v / np.linalg.norm(v, axis=1, keepdims=True), axis=1) > 0.99).all()
    with pytest.raises(UsageError):
        export_mesh(Mesh(v, f), tmp_path / "x.stl")
