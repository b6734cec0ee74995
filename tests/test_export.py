"""Export: the one axis conversion, GLB PBR material / texture / colours / normals, OBJ + MTL + PNG, PLY."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

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


# ------------------------------------------------------------------------------ reproducible bytes, provenance

PROVENANCE = {
    "model": "TencentARC/InstantMesh:instant-mesh-large",
    "seed": 42,
    "steps": 75,
    "scheduler": "EulerAncestralDiscreteScheduler",
    "options": {"views": 6, "texture_size": 1024, "remove_background": True, "scale": 1.0},
}

def _export_all(arrays, provenance, out) -> None:
    """A textured and a vertex-coloured mesh in every format (run here and in a subprocess)."""
    out = Path(out)
    textured = Mesh(arrays["v"], arrays["f"], arrays["c"], arrays["uv"], arrays["tex"])
    coloured = Mesh(arrays["v"], arrays["f"], arrays["c"])
    for name, mesh in (("tex", textured), ("col", coloured)):
        for fmt in ("glb", "obj", "ply"):
            export_mesh(mesh, out / f"{name}.{fmt}", provenance=provenance)


_SUBPROCESS = (
    "import json, sys; import numpy as np; sys.path.insert(0, sys.argv[1]); from test_export import _export_all; "
    "_export_all(np.load(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4])"
)


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_mesh_gives_identical_bytes_across_calls_and_processes(tmp_path):
    import os
    import subprocess
    import sys
    import time

    mesh = textured_sphere()
    arrays = tmp_path / "mesh.npz"
    np.savez(arrays, v=mesh.vertices, f=mesh.faces, c=mesh.vertex_colors, uv=mesh.uv, tex=mesh.texture)
    _export_all(np.load(arrays), PROVENANCE, tmp_path / "a")
    time.sleep(1.1)  # anything stamped with the time (to the second) now differs
    _export_all(np.load(arrays), PROVENANCE, tmp_path / "b")
    # Another process, with another hash seed: no set/dict order or cached state can carry over.
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tests.parent), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", _SUBPROCESS, str(tests), str(arrays), json.dumps(PROVENANCE), str(tmp_path / "c")],
                   check=True, env=env, cwd=tmp_path, timeout=300)
    a, b, c = (_files(tmp_path / run) for run in "abc")
    assert sorted(a) == sorted([
        "col.glb", "col.obj", "col.ply", "tex.glb", "tex.mtl", "tex.obj", "tex.ply", "tex_texture.png",
    ])
    for name in a:
        assert a[name] == b[name], f"{name} differs between two calls"
        assert a[name] == c[name], f"{name} differs in another process"
    # The same PNG, carrying nothing but pixels, in the GLB and beside the OBJ.
    assert glb_image(a["tex.glb"]) == a["tex_texture.png"]
    assert png_chunks(a["tex_texture.png"]) == ["IHDR", "IDAT", "IEND"]
    # And the provenance's insertion order does not matter.
    shuffled = {k: PROVENANCE[k] for k in reversed(list(PROVENANCE))}
    shuffled["options"] = {k: PROVENANCE["options"][k] for k in reversed(list(PROVENANCE["options"]))}
    assert encode_glb(mesh, provenance=shuffled) == a["tex.glb"]


def test_glb_records_generator_and_provenance():
    from instantmesh_cli import __version__

    mesh = textured_sphere()
    data = encode_glb(mesh, provenance={**PROVENANCE, "seed": np.int64(42), "options": {**PROVENANCE["options"], "scale": np.float32(1.0)}})
    asset = glb_json(data)["asset"]
    assert asset["generator"] == f"imesh {__version__}" and asset["version"] == "2.0"
    assert asset["extras"] == {"provenance": PROVENANCE}
    raw = data[20 : 20 + struct.unpack("<I", data[12:16])[0]].decode()
    assert raw.index('"model"') < raw.index('"options"') < raw.index('"scheduler"') < raw.index('"seed"') < raw.index('"steps"')
    # Without provenance: still our generator, and no extras at all.
    plain = glb_json(encode_glb(mesh))["asset"]
    assert plain == {"generator": f"imesh {__version__}", "version": "2.0"}
    # trimesh still reads the file as before.
    tm = load_glb(data)
    np.testing.assert_allclose(tm.vertices, export_transform(mesh).apply(mesh.vertices), atol=1e-6)


def test_glb_buffer_views_have_targets():
    for mesh in (textured_sphere(), Mesh(*sphere()), Mesh(*sphere(), np.full((162, 3), 0.5, np.float32))):
        tree = glb_json(encode_glb(mesh))
        prim = tree["meshes"][0]["primitives"][0]
        views = tree["bufferViews"]
        for accessor in prim["attributes"].values():
            assert views[tree["accessors"][accessor]["bufferView"]]["target"] == 34962
        assert views[tree["accessors"][prim["indices"]]["bufferView"]]["target"] == 34963
        for image in tree.get("images", []):
            assert "target" not in views[image["bufferView"]]  # only vertex and index data have one
        assert all(v["byteOffset"] % 4 == 0 for v in views)
        assert sum(v["byteLength"] for v in views) <= tree["buffers"][0]["byteLength"]


def test_obj_mtl_and_ply_headers_carry_generator_and_provenance(tmp_path):
    import trimesh

    from instantmesh_cli import __version__

    line = "# provenance: " + json.dumps(PROVENANCE, sort_keys=True, separators=(",", ":"))
    export_mesh(textured_sphere(), tmp_path / "t.obj", provenance=PROVENANCE)
    obj = (tmp_path / "t.obj").read_text().splitlines()
    assert obj[:2] == [f"# generator: imesh {__version__}", line]
    assert (tmp_path / "t.mtl").read_text().splitlines()[:2] == obj[:2]
    assert len(trimesh.load(tmp_path / "t.obj", process=False).faces) == textured_sphere().num_faces
    # PLY: comment lines in the header, trimesh's own comment replaced; readers still parse it,
    # even when a provenance value contains the header's end marker.
    tricky = {**PROVENANCE, "note": "end_header"}
    export_mesh(Mesh(*sphere()), tmp_path / "p.ply", provenance=tricky)
    data = (tmp_path / "p.ply").read_bytes()
    head = data[: data.index(b"end_header\n")].decode("ascii").splitlines()
    comments = [h for h in head if h.startswith("comment")]
    assert comments[0] == f"comment generator: imesh {__version__}"
    assert json.loads(comments[1].removeprefix("comment provenance: ")) == tricky
    assert len(comments) == 2 and head[:2] == ["ply", "format binary_little_endian 1.0"]
    tm = trimesh.load(tmp_path / "p.ply", process=False)
    assert len(tm.faces) == len(sphere()[1])


def test_bad_provenance_is_refused_before_writing(tmp_path):
    mesh = Mesh(*sphere())
    for bad, error in (({"seed": float("nan")}, ValueError), ({"when": object()}, TypeError), ({1: "x"}, TypeError),
                       (["not", "a", "mapping"], TypeError)):
        with pytest.raises(error):
            export_mesh(mesh, tmp_path / "x.glb", provenance=bad)
        with pytest.raises(error):
            encode_glb(mesh, provenance=bad)
    assert list(tmp_path.iterdir()) == []


def test_a_texture_png_encoded_beforehand_gives_the_same_files(tmp_path):
    from instantmesh_cli.exchange.png import encode_png, encode_png_soon

    mesh = textured_sphere()
    original = mesh.texture.copy()
    soon = encode_png_soon(mesh.texture)
    mesh.texture[:] = 0  # the encoding works on its own copy: a later change is not in it
    png = soon.result()
    assert png == encode_png(original)
    mesh.texture[:] = original
    assert encode_glb(mesh, texture_png=png) == encode_glb(mesh)
    for fmt in ("glb", "obj"):
        a = export_mesh(mesh, tmp_path / "a" / f"m.{fmt}", texture_png=png)
        b = export_mesh(mesh, tmp_path / "b" / f"m.{fmt}")
        assert [p.name for p in a] == [p.name for p in b]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b)), fmt
