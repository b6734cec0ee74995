"""README's Python section runs as written, with the tiny weights of the fake hub.

One thing differs, said here rather than hidden: the default sampler takes 1 step instead
of 75, because the tiny UNet still denoises full-size 640×960 grids and 75 of those take
minutes on one CPU thread. Every other default is the README's.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_generate import assets, photo, served  # noqa: F401 - fixtures

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_python_section_runs_as_written(served, tmp_path, monkeypatch, capsys):  # noqa: F811
    import dataclasses

    from instantmesh_cli.multiview import schedulers

    euler = schedulers.SAMPLERS["euler-a"]
    monkeypatch.setitem(schedulers.SAMPLERS, "euler-a", dataclasses.replace(euler, default_steps=1))
    [block] = _python_blocks()
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "photo.png")
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - the README's own example
    result, files = scope["result"], scope["files"]
    assert [Path(f).resolve() for f in files] == [tmp_path / "photo.glb"] and (tmp_path / "photo.glb").stat().st_size > 1000
    assert (tmp_path / "photo_views.png").is_file()
    assert result.mesh.is_textured and result.quality is not None
    out = capsys.readouterr().out
    assert str(result.seed) in out, out
