"""imesh's processes leave out peft, which diffusers would import whenever it is installed."""

import subprocess
import sys
import textwrap


def _probe(tmp_path, first: str) -> list[str]:
    # A stand-in peft that says when it is imported: the real one need not be installed here.
    fake = tmp_path / "site" / "peft"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import sys\nsys.stderr.write('peft imported\\n')\n__version__ = '0.99.0'\n")
    code = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path.insert(0, {str(tmp_path / "site")!r})
        {first}
        from diffusers.utils import is_peft_available
        from diffusers import UNet2DConditionModel  # the model class imesh loads: its loaders ask for peft
        print(importlib.util.find_spec("peft") is not None, is_peft_available())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split() + (["imported"] if "peft imported" in done.stderr else [])


def test_the_cli_process_does_not_import_peft(tmp_path):
    assert _probe(tmp_path, "import instantmesh_cli.cli") == ["False", "False"]


def test_without_the_cli_a_present_peft_is_found(tmp_path):
    # The probe can tell: without imesh's entry point, the stand-in is visible to diffusers.
    assert _probe(tmp_path, "pass")[:1] == ["True"]


def test_an_already_imported_package_is_left_alone(monkeypatch):
    from instantmesh_cli import lean_imports

    marker = object()
    monkeypatch.setitem(sys.modules, "peft", marker)
    assert lean_imports.skip_unused_optional_packages() == [] and sys.modules["peft"] is marker
