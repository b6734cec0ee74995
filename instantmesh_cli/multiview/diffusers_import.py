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

imesh's own processes (:func:`use_lean_import`, from :mod:`instantmesh_cli.startup`) leave out
three more things on that first import, measured on the 2-core VM (3.7 s for the two classes):

- scipy.stats (1.0 s): the single-file loaders import several diffusers schedulers, and two
  of them import ``scipy.stats`` when scipy is installed, for beta-sigma schedules. imesh never
  asks for those (its samplers are ``multiview.schedulers``); diffusers is told scipy is
  absent while the classes import, and told the truth again afterwards.
- the ``__init__`` of ``diffusers.models.unets``, ``.autoencoders`` and ``.transformers``
  (0.3 s): each imports every model of its kind, about 130 modules, for the two classes used.
  Those packages are put in place uninitialised (:class:`_DeferredPackage`): their submodules
  import as usual, and the first other name asked of one runs its ``__init__`` then.
- ``torch._dynamo`` (1.5-1.9 s): diffusers' ``torch_utils`` imports its ``allow_in_graph`` (hidden here, so
  diffusers keeps its own no-op stand-in, as on a torch without dynamo), and its ``hooks`` package, which
  ``ModelMixin.to()`` imports, decorates hook methods with ``torch.compiler.disable`` (imported here, with
  each decoration made at the method's first call instead). ``--compile`` imports dynamo before diffusers,
  so none of this applies there.

A library process keeps the plain import: its code may use a beta-sigma schedule later.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
import threading
import types
from typing import Iterator

_MODULES = ("diffusers.models.autoencoders.autoencoder_kl", "diffusers.models.unets.unet_2d_condition")
# Imported by ModelMixin's .to(), .cuda() and .device (for group offloading): brought in here, lean.
_LEAN_ALSO = ("diffusers.hooks",)
_DEFERRED_PACKAGES = ("diffusers.models.unets", "diffusers.models.autoencoders", "diffusers.models.transformers")
_lock = threading.RLock()
_lean: list[bool] = []


def use_lean_import() -> None:
    """Leave scipy.stats and the model packages' ``__init__`` out of the model-class import (see above)."""
    _lean[:] = [True]


def diffusers_model_classes() -> tuple[type, type]:
    """diffusers' ``AutoencoderKL`` and ``UNet2DConditionModel``."""
    with _lock:
        if not all(name in sys.modules for name in _MODULES):
            names = _MODULES
            with contextlib.ExitStack() as hidden:
                if _lean and "torch._dynamo" not in sys.modules and "diffusers" not in sys.modules:
                    hidden.enter_context(_hidden("torch._dynamo"))
                    hidden.enter_context(_compiler_disable_deferred())
                    names += _LEAN_ALSO
                if "transformers" not in sys.modules:
                    hidden.enter_context(_transformers_hidden())
                if _lean:
                    hidden.enter_context(_told_absent("_scipy_available"))
                    _defer_package_inits()
                try:
                    for name in names:
                        importlib.import_module(name)
                except (ImportError, RuntimeError):  # diffusers' lazy modules wrap an ImportError in a RuntimeError
                    pass  # a diffusers that cannot do without them: the plain import below brings them in
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return AutoencoderKL, UNet2DConditionModel


class _DeferredPackage(types.ModuleType):
    """A package in ``sys.modules`` whose ``__init__`` has not run yet: its submodules import as
    usual; the first other attribute asked of it runs the ``__init__`` (once), then answers."""

    def __getattr__(self, name: str):
        with _lock:
            spec = self.__dict__.pop("_deferred_spec", None)
            if spec is not None:
                try:
                    spec.loader.exec_module(self)  # what `import package` runs; present submodules are reused
                except BaseException:
                    self._deferred_spec = spec  # the next attribute tries again, and fails as loudly
                    raise
        return super().__getattribute__(name)


def _defer_package_inits() -> None:
    for name in _DEFERRED_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            continue  # not the diffusers this was written for: its own import runs
        package = _DeferredPackage(name)
        package.__spec__, package.__loader__, package.__file__ = spec, spec.loader, spec.origin
        package.__path__, package.__package__ = list(spec.submodule_search_locations), name
        package._deferred_spec = spec
        sys.modules[name] = package


@contextlib.contextmanager
def _told_absent(*flags: str) -> Iterator[bool]:
    """diffusers' availability ``flags`` (``import_utils._<package>_available``) read False in the block;
    yields whether this is the diffusers this was written for (its first flag is a bool), else changes nothing."""
    from diffusers.utils import import_utils

    if not isinstance(getattr(import_utils, flags[0], None), bool):
        yield False  # not the diffusers this was written for: import as it is
        return
    saved = {flag: getattr(import_utils, flag) for flag in flags if isinstance(getattr(import_utils, flag, None), bool)}
    for flag in saved:
        setattr(import_utils, flag, False)
    try:
        yield True
    finally:
        for flag, value in saved.items():
            setattr(import_utils, flag, value)


@contextlib.contextmanager
def _compiler_disable_deferred() -> Iterator[None]:
    """``torch.compiler.disable(fn)`` made when ``fn`` is first called, not when it is decorated, in the block.

    The decoration imports torch._dynamo. diffusers' hooks package decorates a few methods of hooks
    imesh never installs (first-block cache, group offloading, ...) as it is imported, by way of
    ModelMixin's ``.to()``; a deferred decoration is the same decoration for any caller."""
    import torch

    real = torch.compiler.disable

    def deferred(fn=None, recursive=True, **kwargs):
        if fn is None:
            return functools.partial(deferred, recursive=recursive, **kwargs)
        made = []

        @functools.wraps(fn)
        def call(*args, **kw):
            if not made:
                made.append(real(fn, recursive=recursive, **kwargs))
            return made[0](*args, **kw)

        return call

    torch.compiler.disable = deferred
    try:
        yield
    finally:
        torch.compiler.disable = real


@contextlib.contextmanager
def _hidden(*names: str) -> Iterator[None]:
    """``import name`` raises ImportError in the block, for each of ``names`` not imported yet."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextlib.contextmanager
def _transformers_hidden() -> Iterator[None]:
    # peft imports transformers, so it is hidden with it (when something has not imported it already).
    with _told_absent("_transformers_available", "_peft_available") as known:
        with _hidden(*(("transformers", "peft") if known else ())):
            yield
