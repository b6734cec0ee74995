"""Every GLB we write passes the Khronos glTF-Validator with no errors, warnings, infos or hints.

The validator is the npm package ``gltf-validator``, run by node through tests/gltf/validate.js.
It is found in the folder named by IMESH_GLTF_VALIDATOR (an ``npm install --prefix`` target),
else in .ci/node, where .ci/run installs it:

    npm install --prefix .ci/node --no-save --no-package-lock gltf-validator@2.0.0-dev.3.10

Without node or the package the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from instantmesh_cli.export import encode_glb
from instantmesh_cli.mesh import Mesh
from test_export import PROVENANCE, sphere, textured_sphere

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / "gltf" / "validate.js"


def _validator_prefix() -> Path:
    node = shutil.which("node")
    if node is None:
        pytest.skip("glTF-Validator: node is not installed")
    prefix = Path(os.environ.get("IMESH_GLTF_VALIDATOR") or ROOT / ".ci" / "node")
    if not (prefix / "node_modules" / "gltf-validator").is_dir():
        pytest.skip(f"glTF-Validator: npm package gltf-validator not found under {prefix} "
                    "(npm install --prefix .ci/node gltf-validator, or set IMESH_GLTF_VALIDATOR)")
    return prefix


def validate(paths: list[Path]) -> list[dict]:
    prefix = _validator_prefix()
    run = subprocess.run(
        ["node", str(SCRIPT), *map(str, paths)], env={**os.environ, "IMESH_GLTF_VALIDATOR": str(prefix)},
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_every_kind_of_glb_is_validator_clean(tmp_path):
    v, f = sphere()
    meshes = {
        "textured": (textured_sphere(), PROVENANCE),
        "textured_no_provenance": (textured_sphere(), None),
        "vertex_colours": (Mesh(v, f, np.clip(v + 0.5, 0, 1).astype(np.float32)), PROVENANCE),
        "plain": (Mesh(v, f), PROVENANCE),
    }
    paths = []
    for name, (mesh, provenance) in meshes.items():
        paths.append(tmp_path / f"{name}.glb")
        paths[-1].write_bytes(encode_glb(mesh, provenance=provenance))
    reports = validate(paths)
    assert len(reports) == len(paths)
    for report in reports:
        issues = [(m["code"], m.get("pointer"), m["message"]) for m in report["messages"]]
        counts = (report["errors"], report["warnings"], report["infos"], report["hints"])
        assert counts == (0, 0, 0, 0), f"{Path(report['file']).name}: {counts} {issues}"


def test_the_validator_does_report_problems(tmp_path):
    """The check can fail: a GLB with a colour-tagged PNG and no bufferView targets is flagged."""
    import struct

    import trimesh
    from PIL import Image, ImageCms

    mesh = textured_sphere()
    img = Image.fromarray(mesh.texture, "RGB")
    # An ICC profile (as imesh used to write): colour-space information glTF forbids.
    img.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False, visual=trimesh.visual.TextureVisuals(
        uv=mesh.uv, material=trimesh.visual.material.PBRMaterial(baseColorTexture=img)))
    data = tm.export(file_type="glb")
    assert struct.unpack("<4s", data[:4])[0] == b"glTF"
    (tmp_path / "raw.glb").write_bytes(data)
    (report,) = validate([tmp_path / "raw.glb"])
    codes = {m["code"] for m in report["messages"]}
    assert "BUFFER_VIEW_TARGET_MISSING" in codes and "IMAGE_FEATURES_UNSUPPORTED" in codes
