"""diffusers' model classes, imported without importing transformers.

diffusers imports transformers as a side effect of its model classes:
``diffusers.models.modeling_utils`` reaches ``transformers.utils.quantization_config``
(for its pipeline quantization config), the ``autoencoders`` package imports
transformers' DINOv2 / SigLIP / ViT-MAE models (for ``AutoencoderRAE``) and the
loaders import ``PreTrainedModel`` / ``AutoImageProcessor``. That is most of
transformers' import cost (its ``modeling_utils``, ``generation``, ...), and the
multiview stage uses none of it: its CLIP vision tower is ours (``clip_vision.py``)
and the text encoder is only loaded on the first run per weights.

So when transformers is not loaded yet, the first import of the model classes runs
with transformers hidden: diffusers' ``is_transformers_available()`` answers False and
``import transformers`` fails, both of which diffusers handles. Both are restored
afterwards: transformers can still be imported later in the process (the text
encoder does); only diffusers' transformers-based extras, which we never call (LoRA
on text encoders, single-file loading, ``AutoencoderRAE``), stay off in this process.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from typing import Iterator

_MODULES = ("diffusers.models.autoencoders.autoencoder_kl", "diffusers.models.unets.unet_2d_condition")
_lock = threading.Lock()


def diffusers_model_classes() -> tuple[type, type]:
    """diffusers' ``AutoencoderKL`` and ``UNet2DConditionModel``."""
    with _lock:
        if "transformers" not in sys.modules and not all(name in sys.modules for name in _MODULES):
            try:
                with _transformers_hidden():
                    for name in _MODULES:
                        importlib.import_module(name)
            except (ImportError, RuntimeError):  # diffusers' lazy modules wrap an ImportError in a RuntimeError
                pass  # a diffusers that cannot do without transformers: the plain import below brings it in
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return AutoencoderKL, UNet2DConditionModel


@contextlib.contextmanager
def _transformers_hidden() -> Iterator[None]:
    from diffusers.utils import import_utils

    if not isinstance(getattr(import_utils, "_transformers_available", None), bool):
        yield  # not the diffusers this was written for: import as it is
        return
    # peft imports transformers, so it is hidden with it (when something has not imported it already).
    flags = {flag: getattr(import_utils, flag) for flag in ("_transformers_available", "_peft_available")
             if isinstance(getattr(import_utils, flag, None), bool)}
    hidden = [name for name in ("transformers", "peft") if name not in sys.modules]
    for flag in flags:
        setattr(import_utils, flag, False)
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
        for flag, value in flags.items():
            setattr(import_utils, flag, value)
