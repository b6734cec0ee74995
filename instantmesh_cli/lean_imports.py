"""Imports off the critical path: optional packages imesh never uses, kept out of its own processes, and
the later stages' modules, imported in a thread while the GPU makes the views.

diffusers and transformers import peft whenever it is installed, for LoRA adapters, which
imesh never loads. On the H200 machine's image that import cost 2.5 s of an 18 s cold start,
scikit-learn included. Both libraries decide with ``importlib.util.find_spec``, which answers
None for a name whose ``sys.modules`` entry is None. That entry is also Python's documented
way to make an import fail, so the libraries take their "not installed" path and nothing is
patched inside them. Only imesh's own entry point does this; library users keep their modules.
"""

from __future__ import annotations

import sys

UNUSED_OPTIONAL_PACKAGES = ("peft",)


def skip_unused_optional_packages() -> list[str]:
    """Hide the packages above from this process unless something already imported them; those hidden."""
    hidden = []
    for name in UNUSED_OPTIONAL_PACKAGES:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
            hidden.append(name)
    return hidden


# Imported by the stages after the views (the GLB export's trimesh: 0.24 s on the 2-core VM, the
# only late import over 20 ms). The views keep the GPU busy while the main thread mostly waits
# on it, so importing these then, in a thread, adds nothing to the first job's critical path.
# (Not torch._dynamo, which a default run no longer imports at all: importing its 1.5 s here slowed
# a cold process's first views by 0.6-1.3 s on the H200, where their graph capture runs Python.)
LATER_STAGE_MODULES = ("trimesh",)
_started: list[bool] = []


def import_later_stage_modules() -> None:
    """Start importing :data:`LATER_STAGE_MODULES` in a daemon thread, once per process (errors are left
    for the stage that imports the module itself to report)."""
    import importlib
    import threading

    if _started:
        return
    _started.append(True)
    todo = [name for name in LATER_STAGE_MODULES if name not in sys.modules]

    def run() -> None:
        for name in todo:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the stage's own import reports it
                pass

    if todo:
        threading.Thread(target=run, name="imesh-imports", daemon=True).start()
