"""``imesh download`` for a rembg model: find a verified copy, else download it to its place.

Where it lands:

- by default in rembg's own layout, ``<rembg home>/models/<name>/<name>.onnx``, so that
  rembg (and every other tool using it) finds it;
- with ``imesh download --to DIR`` in ``DIR/rembg/<name>.onnx``, recorded in the
  folder's ``imesh-manifest.json``; runs given ``--weights-dir DIR`` read it from
  there (see :class:`~instantmesh_cli.images.matting.BackgroundRemover`).

Every copy is checked against rembg's pinned md5 (:mod:`.matting_pins`); the status
words are the Hub files' (``ok``, ``downloaded``, ``copied``, ``repaired``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from instantmesh_cli.errors import UsageError
from instantmesh_cli.fileio import atomic_path
from instantmesh_cli.hub.download import Progress
from instantmesh_cli.hub.errors import CorruptWeightsError, MissingWeightsError
from instantmesh_cli.hub.manifest import record_matting
from instantmesh_cli.hub.offline import is_offline
from instantmesh_cli.hub.paths import resolve_weights_dir
from instantmesh_cli.images.matting import DEFAULT_MATTING_MODEL, download_command, in_weights_dir, rembg_files
from instantmesh_cli.images.matting_download import download_file, problem
from instantmesh_cli.images.matting_pins import PINNED, MattingFile, pinned


@dataclass(frozen=True)
class MattingResult:
    """Where a matting model was found and what had to be done for it."""

    file: MattingFile
    path: Path
    status: str  # "ok" | "downloaded" | "copied" (from rembg's home) | "repaired" (bad copy replaced)
    source: str  # "weights-dir" | "rembg home" | "dir" | the host it was downloaded from


def pin_for(model: str) -> MattingFile:
    """The pinned file of ``model``; a usage error naming the choices if imesh cannot fetch it."""
    found = pinned(model)
    if found is None:
        raise UsageError(f"imesh download cannot fetch matting model {model!r}; "
                         f"it fetches {', '.join(PINNED)} (rembg downloads others itself on first use)")
    return found


def _missing_offline(pin: MattingFile) -> MissingWeightsError:
    return MissingWeightsError(
        f"rembg model {pin.model} ({pin.filename}) is not on this machine and offline mode is on",
        hint=f"run `{download_command(pin.model)}` with network, or `{download_command(pin.model)} --to DIR` "
        "on a connected machine and pass --weights-dir DIR here")


def _download(pin: MattingFile, target: Path, progress: Progress | None) -> str:
    url = pin.url()
    download_file(url, target, md5=pin.md5, size=pin.size, progress=progress)
    return urlsplit(url).netloc or url


def ensure_matting(model: str = DEFAULT_MATTING_MODEL, *, offline: bool | None = None,
                   weights_dir: str | os.PathLike[str] | None = None,
                   progress: Progress | None = None) -> MattingResult:
    """Make ``model`` available where runs find it: ``weights_dir``, else rembg's home (downloading there)."""
    pin = pin_for(model)
    wdir = resolve_weights_dir(weights_dir)
    if wdir is not None:
        path = in_weights_dir(wdir, model)
        if path.is_file():
            why = problem(path, pin.md5, pin.size)
            if why is not None:
                raise CorruptWeightsError(f"{path} is corrupted ({why})",
                                          hint="copy it again, or run `imesh download --to DIR` again to repair it")
            return MattingResult(pin, path, "ok", "weights-dir")
    target = rembg_files(model)[0]
    repaired = False
    # rembg reads the first of its places that holds a file, good or not: only that one counts.
    current = next((p for p in rembg_files(model) if p.is_file()), None)
    if current is not None:
        why = problem(current, pin.md5, pin.size)
        if why is None:
            return MattingResult(pin, current, "ok", "rembg home")
        if is_offline(offline):
            raise CorruptWeightsError(f"{current} is corrupted ({why}) and offline mode is on",
                                      hint=f"run `{download_command(model)}` with network to fetch it again")
        # A verified file at the per-model path replaces a bad one there, and wins over a bad legacy one.
        repaired = True
    if is_offline(offline):
        raise _missing_offline(pin)
    source = _download(pin, target, progress)
    return MattingResult(pin, target, "repaired" if repaired else "downloaded", source)


def export_matting(model: str, target_dir: str | os.PathLike[str], *, offline: bool | None = None,
                   progress: Progress | None = None) -> MattingResult:
    """Put a verified copy of ``model`` at ``target_dir/rembg/<name>.onnx`` and record it in the manifest."""
    pin = pin_for(model)
    target_dir = Path(target_dir).expanduser()
    dest = in_weights_dir(target_dir, model)
    status = "ok"
    if dest.is_file():
        if problem(dest, pin.md5, pin.size) is None:
            record_matting(target_dir, model, dest, md5=pin.md5)
            return MattingResult(pin, dest, "ok", "dir")
        status = "repaired"  # replaced below, only by a verified file
    source_copy = next((p for p in rembg_files(model) if p.is_file() and problem(p, pin.md5, pin.size) is None),
                       None)
    if source_copy is not None:
        with atomic_path(dest) as tmp:
            shutil.copyfile(source_copy, tmp)
        source = "rembg home"
    else:
        if is_offline(offline):
            if status == "repaired":
                raise CorruptWeightsError(f"{dest} is corrupted and offline mode is on",
                                          hint=f"run `{download_command(model)} --to DIR` with network")
            raise _missing_offline(pin)
        source = _download(pin, dest, progress)
    record_matting(target_dir, model, dest, md5=pin.md5)
    if status == "ok":
        status = "copied" if source == "rembg home" else "downloaded"
    return MattingResult(pin, dest, status, source)
