"""Optional packages that imesh never uses, kept out of its own processes.

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
