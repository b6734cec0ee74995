"""Other libraries' chatter off, in one place: their logging, progress bars and advice.

A normal ``imesh`` run prints only its own progress and messages on stderr (and only
data on stdout). huggingface_hub ("Trying to resume download..."), diffusers and
transformers (loading advice, "Writing model shards" bars), tqdm bars and pooch's
download lines would tear through that. The CLI calls :func:`silence_libraries` at
start-up, before any of them is imported (most read their settings at import); with
``--debug`` it does not, and everything they say is shown. Settings the user gave in
the environment win over these.
"""

from __future__ import annotations

import logging
import os

# Each library reads these once, at import.
ENV_DEFAULTS = {
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # our downloads report through their own bar class
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DIFFUSERS_VERBOSITY": "error",
    "TQDM_DISABLE": "1",  # any other tqdm bar (tqdm >= 4.66 reads TQDM_* as defaults)
}

_silenced = False


def silence_libraries() -> None:
    global _silenced
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # Warnings from loggers nobody configured reach stderr through logging's last-resort
    # handler; one do-nothing handler on the root logger takes its place.
    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())
    _silenced = True


def quiet_pooch() -> None:
    """rembg fetches its models through pooch, whose own logger (not under the root logger,
    so out of reach above) prints every download; called once rembg is imported."""
    if not _silenced:
        return
    try:
        import pooch
    except ImportError:
        return
    pooch.get_logger().setLevel(logging.WARNING)
