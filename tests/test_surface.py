"""--remesh and --watertight: MeshLab surface work (the optional ``meshlab`` extra) and its absence."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from instantmesh_cli.chain.options import PipelineOptions
from instantmesh_cli.cli import run
from instantmesh_cli.errors import ImeshError
from instantmesh_cli.mesh import Mesh, open_edges, signed_volume
from test_generate import FAST, assets, photo, served  # noqa: F401 - fixtures

needs_meshlab = pytest.mark.skipif(importlib.util.find_spec("pymeshlab") is None, reason="pymeshlab (the meshlab extra) is not installed")


def icosphere(subdivisions: int = 4, radius: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions, radius=radius)
    return np.asarray(s.vertices), np.asarray(s.faces)


def broken_sphere() -> Mesh:
    """A sphere with six holes, a patch wound the wrong way and a seam of unwelded duplicate vertices."""
    v, f = icosphere()
    keep = np.ones(len(f), bool)
    keep[[3, 4, 5, 100, 101, 900]] = False
    f = f[keep].copy()
    f[:200] = f[:200, ::-1]
    dup = np.unique(f[:300])
    remap = np.arange(len(v))
    remap[dup] = len(v) + np.arange(len(dup))
    f[:300] = remap[f[:300]]
    v = np.vstack([v, v[dup]])
    return Mesh(v, f, vertex_colors=(v + 1) / 2)


@needs_meshlab
def test_watertight_repair_closes_and_orients():
    from instantmesh_cli.mesh import make_watertight

    broken = broken_sphere()
    assert open_edges(broken)[0] > 100
    fixed, report = make_watertight(broken)
    assert report.closed and report.shells == 1 and report.boundary_edges_before > 100
    assert open_edges(fixed) == (0, 0)
    # Outward and the sphere's volume: the caps fill the holes, the flipped patch is turned back.
    assert signed_volume(fixed) == pytest.approx(4 / 3 * np.pi * 0.8**3, rel=0.02)
    np.testing.assert_allclose(fixed.vertex_colors, (fixed.vertices + 1) / 2, atol=1e-5)  # colours follow


@needs_meshlab
def test_remesh_gives_even_triangles_near_the_target_count():
    from instantmesh_cli.mesh import face_areas, remesh

    v, f = icosphere(5)
    # Uneven on purpose: squash the sphere's triangles near one pole by moving vertices.
    v = v.copy()
    v[:, 2] = np.sign(v[:, 2]) * np.abs(v[:, 2] / 0.8) ** 0.5 * 0.8
    v *= 0.8 / np.linalg.norm(v, axis=1, keepdims=True)
    mesh = Mesh(v, f)
    out = remesh(mesh, 3000)
    assert 2000 <= out.num_faces <= 4500
    assert np.abs(np.linalg.norm(out.vertices, axis=1) - 0.8).max() < 0.02  # still the sphere
    spread = lambda m: np.std(face_areas(m)) / np.mean(face_areas(m))  # noqa: E731
    assert spread(out) < spread(mesh) / 2
    assert out.metadata["remesh"]["faces_before"] == mesh.num_faces and open_edges(out) == (0, 0)


def test_missing_extra_is_one_line_naming_the_install(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pymeshlab" else real(name, *a))
    with pytest.raises(ImeshError) as info:
        PipelineOptions(watertight=True).check()
    assert info.value.exit_code == 1 and "instantmesh-cli[meshlab]" in str(info.value)
    PipelineOptions().check()  # nothing asked, nothing needed
    assert run(["generate", "--example", "-o", str(tmp_path / "x.glb"), "--remesh"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["imesh: error: --remesh needs pymeshlab, which is not installed "
                   "(pip install 'instantmesh-cli[meshlab]', which adds pymeshlab: GPL-3.0, about 280 MB)"]


@needs_meshlab
def test_generate_watertight_for_printing(served, tmp_path, capsys):  # noqa: F811
    import trimesh

    src = photo(tmp_path / "toy.png")
    out = tmp_path / "toy.ply"
    code = run(["generate", str(src), "-o", str(out), "--no-texture", "--remesh", "--watertight",
                "--target-faces", "1500", "--json", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert '"mesh"' in captured.out  # the stage ran and was timed
    mesh = trimesh.load(out, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert 800 <= len(mesh.faces) <= 2500
