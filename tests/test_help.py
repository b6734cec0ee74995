"""Help that reads like a man page: panels, choices, examples on their own lines, env vars, 100 columns."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

COMMANDS = ["generate", "multiview", "reconstruct", "prepare", "download", "selftest", "doctor", "bench"]


def help_text(*args: str, columns: int = 100) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "instantmesh_cli", *args, "--help"], capture_output=True,
                          text=True, env=env, timeout=60, check=True)
    return proc.stdout


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {name: help_text(name) for name in COMMANDS}


def test_generate_help_fits_100_columns_untruncated(pages):
    lines = pages["generate"].splitlines()
    assert max(len(line) for line in lines) <= 100
    assert not [line for line in lines if line.rstrip(" │").endswith("…")]
    for panel in ("Input and output", "Sampling", "Background removal", "Reconstruction", "Surface", "Texture",
                  "Performance", "Weights", "Help"):
        assert f"─ {panel}" in pages["generate"], panel
    for option in ("--example", "--remesh", "--watertight", "--target-faces", "--weights-dir"):
        assert option in pages["generate"]


def test_no_type_labels_where_they_say_nothing(pages):
    for name, page in pages.items():
        assert "<bool>" not in page and "<str>" not in page and "<list[str]>" not in page, name


def test_choices_and_env_vars_are_shown(pages):
    page = pages["generate"]
    assert "<euler-a|dpm++2m|unipc>" in page and "<box|xatlas>" in page and "<glb|obj|ply>" in page
    assert "instant-nerf-base" in page and "4|6" in page
    assert "[env var: HF_HUB_OFFLINE]" in page and "[env var: IMESH_WEIGHTS_DIR]" in page
    assert "[env var: IMESH_WEIGHTS_DIR]" in pages["download"] and "[env var: IMESH_WEIGHTS_DIR]" in pages["doctor"]
    assert "[env var: IMESH_DEBUG]" in help_text()


def test_every_command_has_examples_each_on_its_own_line(pages):
    for name, page in pages.items():
        lines = [line.strip() for line in page.splitlines()]
        start = lines.index("Examples:")
        examples = [line for line in lines[start + 1:] if line]
        assert len(examples) >= 2, name
        # One command per line: each line is a command of its own (or a pipe into one).
        assert all(line.startswith("imesh ") or "| imesh " in line or "&& imesh" in line for line in examples), name


def test_json_and_quiet_on_every_command_that_writes_or_reports(pages):
    for name, page in pages.items():
        assert "--json" in page and "--quiet" in page, name


def test_top_level_help_is_fast_and_grouped():
    start = time.perf_counter()
    page = help_text()
    elapsed = time.perf_counter() - start
    assert "─ Make meshes" in page and "─ Set up and check" in page
    assert page.index("generate") < page.index("multiview") < page.index("download") < page.index("bench")
    assert elapsed < 5.0  # a new interpreter included; no torch (tests/test_cli.py checks the imports)


def test_a_command_call_builds_only_that_command_and_help_still_lists_all_in_order():
    import subprocess
    import sys

    from instantmesh_cli.cli import commands
    from instantmesh_cli.cli.app import app

    code = ("import sys; from instantmesh_cli.cli import run; run(['generate', '--help']); "
            "print(sorted(m for m in sys.modules if m.startswith('instantmesh_cli.cli.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "instantmesh_cli.cli.generate" in loaded
    assert not any(f"instantmesh_cli.cli.{name}'" in loaded for name in commands.COMMANDS if name != "generate")
    commands.register("preview")  # one command first, as a process that ran it would
    commands.register(None)
    assert [commands._name(info) for info in app.registered_commands] == list(commands.COMMANDS)
