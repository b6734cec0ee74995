"""The GLB container (glTF 2.0 binary): read, finish and write what trimesh exports.

trimesh builds the scene (accessors, material, texture); :func:`finish_glb` then makes the
file ours and validator-clean:

- ``asset.generator`` names imesh and its version; ``asset.extras.provenance`` records how
  the mesh was made (``extras`` is the glTF slot for application data, accepted on every
  object, so validators stay silent about it).
- every bufferView that holds vertex attributes gets ``target`` 34962 (ARRAY_BUFFER) and
  every one that holds indices 34963 (ELEMENT_ARRAY_BUFFER); trimesh leaves them out and the
  Khronos validator hints BUFFER_VIEW_TARGET_MISSING for each.
- the embedded texture is replaced by :func:`instantmesh_cli.exchange.png.encode_png`'s
  bytes, so the GLB's PNG is exactly the one the OBJ side file gets, whatever trimesh's
  own encoder settings.
- ``COLOR_0`` can be added as 16-bit unsigned normalised RGBA (trimesh writes 8 bits only).
- JSON keys are sorted: the bytes do not depend on the order a library filled its dicts.

Layout follows the specification: 12-byte header, JSON chunk padded with spaces, BIN chunk
padded with zeros, every chunk and bufferView 4-byte aligned.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GLB_MAGIC = b"glTF"
JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
UNSIGNED_SHORT = 5123


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """(JSON tree, BIN chunk payload) of a glTF 2.0 binary."""
    if len(data) < 20:
        raise ValueError("not a glTF 2.0 binary: too short")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise ValueError("not a glTF 2.0 binary")
    if length != len(data):
        raise ValueError(f"GLB header says {length} bytes, the data has {len(data)}")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != JSON_CHUNK:
        raise ValueError("GLB does not start with a JSON chunk")
    tree = json.loads(data[20 : 20 + json_len])
    offset = 20 + json_len
    binary = b""
    if offset < len(data):
        bin_len, bin_type = struct.unpack_from("<II", data, offset)
        if bin_type != BIN_CHUNK:
            raise ValueError("GLB second chunk is not BIN")
        binary = data[offset + 8 : offset + 8 + bin_len]
    return tree, binary


def write_glb(tree: dict, binary: bytes) -> bytes:
    """The GLB file for ``tree`` and one BIN buffer (``buffers`` is set to match)."""
    tree = dict(tree)
    binary = bytes(binary) + b"\0" * (-len(binary) % 4)
    if binary:
        tree["buffers"] = [{"byteLength": len(binary)}]
    else:
        tree.pop("buffers", None)
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    chunks = [struct.pack("<II", len(text), JSON_CHUNK), text]
    if binary:
        chunks += [struct.pack("<II", len(binary), BIN_CHUNK), binary]
    body = b"".join(chunks)
    return struct.pack("<4sII", GLB_MAGIC, 2, 12 + len(body)) + body


def finish_glb(
    data: bytes,
    *,
    generator: str,
    provenance: Mapping[str, Any] | None = None,
    images: Sequence[bytes] | None = None,
    color_0: np.ndarray | None = None,
) -> bytes:
    """Finish a trimesh GLB as described in the module docstring.

    ``provenance`` must already be JSON-ready (see ``provenance.normalize_provenance``);
    ``images[i]`` replaces the PNG of image ``i``; ``color_0`` is linear RGB in [0, 1],
    one row per vertex of the file's single primitive.
    """
    tree, binary = read_glb(data)
    views = tree.setdefault("bufferViews", [])
    if any(v.get("buffer", 0) != 0 for v in views) or len(tree.get("buffers", [])) > 1:
        raise ValueError("expected one binary buffer")
    payloads = [binary[v.get("byteOffset", 0) : v.get("byteOffset", 0) + v["byteLength"]] for v in views]

    for index, png in enumerate(images or ()):
        image = tree["images"][index]
        if image.get("mimeType") != "image/png":
            raise ValueError(f"image {index} is {image.get('mimeType')}, not PNG")
        payloads[image["bufferView"]] = bytes(png)

    primitives = [p for m in tree.get("meshes", []) for p in m["primitives"]]
    if color_0 is not None:
        (primitive,) = primitives
        _add_color_0(tree, payloads, primitive, color_0)

    accessors = tree.get("accessors", [])
    targets: dict[int, int] = {}
    for primitive in primitives:
        for accessor in primitive["attributes"].values():
            _claim_target(targets, accessors[accessor], ARRAY_BUFFER)
        if "indices" in primitive:
            _claim_target(targets, accessors[primitive["indices"]], ELEMENT_ARRAY_BUFFER)

    packed = bytearray()
    new_views = []
    for i, (view, payload) in enumerate(zip(views, payloads)):
        packed += b"\0" * (-len(packed) % 4)
        view = {k: v for k, v in view.items() if k != "target"}
        view.update(buffer=0, byteOffset=len(packed), byteLength=len(payload))
        if i in targets:
            view["target"] = targets[i]
        new_views.append(view)
        packed += payload
    if new_views:
        tree["bufferViews"] = new_views
    else:
        del tree["bufferViews"]  # glTF forbids empty arrays

    asset = {k: v for k, v in tree.get("asset", {}).items() if k not in ("generator", "extras")}
    asset.update(version="2.0", generator=generator)
    if provenance is not None:
        asset["extras"] = {"provenance": provenance}
    tree["asset"] = asset
    return write_glb(tree, bytes(packed))


def _claim_target(targets: dict[int, int], accessor: dict, target: int) -> None:
    if "bufferView" not in accessor:
        return
    view = accessor["bufferView"]
    if targets.setdefault(view, target) != target:
        raise ValueError(f"bufferView {view} holds both vertex attributes and indices")


def _add_color_0(tree: dict, payloads: list[bytes], primitive: dict, linear_rgb: np.ndarray) -> None:
    # 16 bits because COLOR_0 is linear: 8 bits leave too few levels in the darks (every
    # sRGB value below 0.05 would collapse to 0). 8 bytes per vertex keep 4-byte alignment.
    count = tree["accessors"][primitive["attributes"]["POSITION"]]["count"]
    linear_rgb = np.asarray(linear_rgb, dtype=np.float64)
    if linear_rgb.shape != (count, 3):
        raise ValueError(f"COLOR_0 needs ({count}, 3) colours, got {linear_rgb.shape}")
    rgba = np.ones((count, 4))
    rgba[:, :3] = np.clip(linear_rgb, 0.0, 1.0)
    payloads.append(np.round(rgba * 65535).astype("<u2").tobytes())
    tree.setdefault("bufferViews", []).append({"buffer": 0, "byteLength": len(payloads[-1])})
    tree["accessors"].append({
        "bufferView": len(tree["bufferViews"]) - 1, "componentType": UNSIGNED_SHORT, "normalized": True,
        "count": count, "type": "VEC4",
    })
    primitive["attributes"]["COLOR_0"] = len(tree["accessors"]) - 1
