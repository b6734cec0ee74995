"""The CLI's contract: exit codes, one-line errors, fast start-up without heavy imports."""

import subprocess
import sys

from instantmesh_cli import __version__
from instantmesh_cli.cli import run


def test_version(capsys):
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"imesh {__version__}"


def test_usage_errors_exit_2_with_one_line(capsys):
    for argv in (["generate", "x.png"], ["bogus"], ["prepare"], ["generate", "a.png", "-o", "o.glb", "--steps", "x"]):
        assert run(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("imesh: error: "), (argv, err)


def test_bad_option_values_are_usage_errors(tmp_path, capsys):
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    assert run(["generate", str(img), "-o", str(tmp_path / "o.glb"), "--foreground-ratio", "1.5"]) == 2
    assert "--foreground-ratio" in capsys.readouterr().err
    assert run(["generate", str(img), "-o", str(tmp_path / "o.fbx")]) == 2
    assert ".fbx" in capsys.readouterr().err


def test_no_arguments_prints_help(capsys):
    assert run([]) == 0
    assert "generate" in capsys.readouterr().out + capsys.readouterr().err


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from instantmesh_cli.cli import run; run(['--help']);"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'trimesh', 'rembg', 'nvdiffrast') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_light_name_lists_match_the_library():
    from typing import get_args

    from instantmesh_cli import settings
    from instantmesh_cli.chain.options import DTYPES, SCHEDULERS, UV_METHODS
    from instantmesh_cli.cli import options
    from instantmesh_cli.device import DTYPE_NAMES
    from instantmesh_cli.multiview.schedulers import SAMPLERS
    from instantmesh_cli.reconstruction.config import VARIANT_CONFIGS
    from instantmesh_cli.texture import uv

    assert UV_METHODS == uv.UV_METHODS == get_args(options.UvName)
    assert set(SCHEDULERS) == set(SAMPLERS) == set(get_args(options.SchedulerName))
    assert set(settings.VARIANTS) == set(VARIANT_CONFIGS) == set(get_args(options.ModelName))
    assert DTYPES == DTYPE_NAMES == get_args(options.DtypeName)


def test_library_warnings_become_one_line(capsys):
    from instantmesh_cli.cli import _show_warning

    _show_warning(UserWarning("nvdiffrast unavailable; using the torch rasterizer"), UserWarning, "/x/instantmesh_cli/texture/raster.py", 1)
    _show_warning(FutureWarning("some other library"), FutureWarning, "/x/site-packages/diffusers/a.py", 1)
    err = capsys.readouterr().err
    assert err == "imesh: warning: nvdiffrast unavailable; using the torch rasterizer\n"
