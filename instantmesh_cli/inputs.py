"""Turning command-line inputs into work items and output paths (files, folders, globs, lists, stdin).

Pure functions on paths and strings: no models, no image decoding. ``imesh generate``
(and the other commands) use them so that files, folders, globs, lists and stdin
all behave the same way.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, TextIO

from instantmesh_cli.errors import UsageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
STDIN = "-"


@dataclass(frozen=True)
class InputItem:
    """One image to process: a file, or the bytes on stdin (``path is None``)."""

    path: Path | None
    name: str  # shown in logs and JSON: the path as given, or "-"
    stem: str  # base of the output file name
    subdir: Path = Path()  # folder below the input folder it was found in (kept under -o DIR/)

    @property
    def is_stdin(self) -> bool:
        return self.path is None


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    """The images a folder holds. A link whose target is gone is kept: it is reported as a failed
    input rather than dropped without a word."""
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern)
        if (p.is_file() or (p.is_symlink() and not p.exists())) and p.suffix.lower() in IMAGE_SUFFIXES
    )


def read_list(stream: TextIO) -> list[str]:
    """Paths one per line; blank lines and ``#`` comments are skipped."""
    out = []
    for line in stream:
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def single_item(arg: str) -> InputItem:
    """The item of a command that takes one input: a path, or ``-`` for stdin."""
    if arg == STDIN:
        return InputItem(path=None, name=STDIN, stem="stdin")
    path = Path(arg).expanduser()
    return InputItem(path=path, name=arg, stem=path.stem)


def expand_inputs(
    args: Iterable[str],
    *,
    recursive: bool = False,
    from_list: Iterable[str] = (),
) -> list[InputItem]:
    """Files, folders and glob patterns → work items, in a stable order, duplicates removed.

    A path that does not exist is kept as an item so that it is reported as a failed
    input and the rest of the batch still runs. ``"-"`` alone means image bytes on stdin.
    """
    args = list(args) + list(from_list)
    if STDIN in args:
        if len(args) > 1:
            raise UsageError("'-' (image bytes on stdin) cannot be combined with other inputs")
        return [InputItem(path=None, name=STDIN, stem="stdin")]
    items: list[InputItem] = []
    seen: set[str] = set()

    def add(path: Path, subdir: Path = Path()) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            items.append(InputItem(path=path, name=str(path), stem=path.stem, subdir=subdir))

    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            found = _folder_images(path, recursive)
            if not found:
                raise UsageError(f"no images in folder {arg}" + ("" if recursive else " (use --recursive for sub-folders)"))
            for p in found:
                add(p, p.parent.relative_to(path))
        elif not path.exists() and _has_glob(arg):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(arg), recursive=True))
            matches = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            if not matches:
                raise UsageError(f"no images match {arg!r}")
            for m in matches:
                add(m)
        else:
            add(path)
    if not items:
        raise UsageError("no input images given")
    return items


def is_directory_target(output: str, n_items: int) -> bool:
    return output.endswith(("/", os.sep)) or Path(output).is_dir() or n_items > 1


def output_names(items, ext: str) -> list[Path]:
    """Each item's output below an output folder: ``{subdir}/{stem}.{ext}``, later clashes numbered
    ``{stem}_2``, ``{stem}_3`` in input order (case-insensitively, for case-insensitive filesystems).
    Items need only ``stem`` and ``subdir``, so remote inputs are named the same way."""
    taken: set[str] = set()
    names: list[Path] = []
    for item in items:
        base = item.subdir / item.stem
        candidate, n = base, 1
        while str(candidate).lower() in taken:
            n += 1
            candidate = base.with_name(f"{item.stem}_{n}")
        taken.add(str(candidate).lower())
        names.append(Path(f"{candidate}.{ext}"))
    return names


def file_target(output: str, fmt: str | None, formats: tuple[str, ...]) -> tuple[str, str]:
    """``-o`` naming one file (a path or a URI): the name with its extension, and the format."""
    suffix = PurePosixPath(output).suffix.lower().lstrip(".")
    if suffix and suffix not in formats:
        raise UsageError(f"cannot write .{suffix} files; use one of: {', '.join('.' + f for f in formats)}")
    if suffix and fmt and suffix != fmt:
        raise UsageError(f"-o {output} and --format {fmt} disagree")
    ext = suffix or fmt or "glb"
    return (output if suffix else f"{output}.{ext}"), ext


def plan_outputs(items: list[InputItem], output: str, fmt: str | None, formats: tuple[str, ...]) -> tuple[list[Path | None], str]:
    """Output path per item (``None`` = stdout) and the format.

    ``-o out.glb`` takes one input; ``-o DIR/`` any number (see :func:`output_names`: the
    input's sub-folder kept, clashes numbered); ``-o -`` writes a binary GLB to stdout for one input.
    """
    if fmt is not None and fmt not in formats:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(formats)}")
    if output == STDIN:
        if len(items) != 1:
            raise UsageError("-o - (GLB on stdout) takes exactly one input")
        if fmt not in (None, "glb"):
            raise UsageError("-o - writes GLB only (OBJ needs side files); drop --format or use --format glb")
        return [None], "glb"
    if is_directory_target(output, len(items)):
        if Path(output).exists() and not Path(output).is_dir():
            raise UsageError(f"{output} is a file; with several inputs -o must be a folder (end it with /)")
        ext = fmt or "glb"
        folder = Path(output)
        return [folder / name for name in output_names(items, ext)], ext
    target, ext = file_target(output, fmt, formats)
    return [Path(target)], ext
