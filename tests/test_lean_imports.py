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


def test_a_library_process_with_a_real_style_peft_loads_the_model_classes(tmp_path):
    # Without imesh's entry point peft stays visible; like the real one, this stand-in imports
    # transformers at its top. The model classes are imported with transformers hidden, and peft
    # must be hidden with it: it used to fail there (diffusers wraps the ImportError in a RuntimeError).
    fake = tmp_path / "site" / "peft"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import transformers\n__version__ = '0.99.0'\n")
    info = tmp_path / "site" / "peft-0.99.0.dist-info"  # diffusers asks importlib.metadata whether it is installed
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: peft\nVersion: 0.99.0\n")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / "site")!r})
        from instantmesh_cli.multiview.diffusers_import import diffusers_model_classes
        vae, unet = diffusers_model_classes()
        print(vae.__name__, unet.__name__, "transformers" in sys.modules, sys.modules.get("peft", "absent") is None)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.split() == ["AutoencoderKL", "UNet2DConditionModel", "False", "False"]


def test_the_later_stages_modules_are_imported_in_a_thread_once():
    code = textwrap.dedent("""
        import sys, threading
        from instantmesh_cli import lean_imports
        assert "trimesh" not in sys.modules
        lean_imports.import_later_stage_modules()
        lean_imports.import_later_stage_modules()  # once per process
        workers = [t for t in threading.enumerate() if t.name == "imesh-imports"]
        assert len(workers) <= 1, workers
        for t in workers:
            t.join()
        print("trimesh" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


_CLASSES_PROBE = """
    import sys
    {first}
    from instantmesh_cli.multiview.diffusers_import import diffusers_model_classes
    vae, unet = diffusers_model_classes()
    import diffusers
    from diffusers.utils import is_scipy_available
    print("scipy.stats" in sys.modules, "diffusers.models.unets.unet_1d" in sys.modules,
          vae is diffusers.AutoencoderKL and unet is diffusers.UNet2DConditionModel, is_scipy_available())
    # Everything else diffusers has still imports in this process, through the deferred package inits too.
    from diffusers.models.unets import UNet1DModel
    from diffusers.models.autoencoders import AutoencoderTiny
    import diffusers.models.transformers as transformers_package
    print(UNet1DModel.__name__, AutoencoderTiny.__name__, transformers_package.Transformer2DModel.__name__,
          "diffusers.models.unets.unet_1d" in sys.modules)
    try:
        transformers_package.no_such_model
    except AttributeError:
        print("AttributeError")
    # The sampler whose diffusers module imported while scipy was hidden still runs.
    import torch
    from instantmesh_cli.multiview.schedulers import get_sampler
    sched = get_sampler("dpm++2m").build({{"num_train_timesteps": 1000, "beta_schedule": "linear",
                                           "prediction_type": "v_prediction"}})
    sched.set_timesteps(4)
    x = torch.zeros(1, 4, 8, 8)
    print(tuple(sched.step(torch.ones_like(x), sched.timesteps[0], x, return_dict=False)[0].shape))
"""


def _classes_probe(first: str) -> list[list[str]]:
    code = textwrap.dedent(_CLASSES_PROBE.format(first=first))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    return [line.split() for line in done.stdout.strip().splitlines()]


def test_the_cli_process_imports_the_two_model_classes_without_scipy_stats_or_every_other_model():
    lines = _classes_probe("import instantmesh_cli.cli")
    assert lines[0] == ["False", "False", "True", "True"]  # and diffusers is told the truth about scipy again
    assert lines[1] == ["UNet1DModel", "AutoencoderTiny", "Transformer2DModel", "True"]
    assert lines[2] == ["AttributeError"]
    assert lines[3] == ["(1,", "4,", "8,", "8)"]


def test_a_library_process_imports_the_model_classes_the_plain_way():
    # The probe can tell: without imesh's entry point diffusers' own imports run, scipy.stats with them.
    lines = _classes_probe("pass")
    assert lines[0] == ["True", "True", "True", "True"]
    assert lines[1][:3] == ["UNet1DModel", "AutoencoderTiny", "Transformer2DModel"]


def test_the_cli_process_builds_and_moves_the_unet_without_importing_torch_dynamo():
    # torch._dynamo's import (1.5 s on the 2-core VM) came from diffusers' torch_utils (allow_in_graph), its hooks
    # package (reached by ModelMixin.to) and meta-device initialisers; it is left to the later stages' thread.
    code = textwrap.dedent("""
        import sys, torch
        import instantmesh_cli.cli
        from instantmesh_cli import random_weights as rw
        from instantmesh_cli.multiview.loading import build_unet_from_config
        unet = build_unet_from_config(rw.TINY.unet)
        unet.to(memory_format=torch.channels_last)  # diffusers' ModelMixin.to imports its hooks package
        print("torch._dynamo" in sys.modules, "diffusers.hooks" in sys.modules, unet.device.type,
              torch.compiler.disable.__module__)
        from diffusers.hooks.first_block_cache import FBCHeadBlockHook  # one of the deferred decorations
        import torch._dynamo  # still importable, and a deferred decoration is the real one once called
        print(torch.compiler.disable(lambda x: x + 1)(torch.ones(1)).item())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split() == ["False", "True", "meta", "torch.compiler", "2.0"]


def test_a_deferred_compiler_disable_decorates_on_the_first_call():
    import torch

    from instantmesh_cli.multiview.diffusers_import import _compiler_disable_deferred

    real = torch.compiler.disable
    made = []
    with _compiler_disable_deferred():
        assert torch.compiler.disable is not real

        @torch.compiler.disable
        def plain(x):
            made.append(x)
            return x * 2

        @torch.compiler.disable(recursive=False)
        def shallow(x):
            return x + 1

    assert torch.compiler.disable is real
    assert plain.__name__ == "plain" and made == []
    assert plain(3) == 6 and shallow(3) == 4 and made == [3]
