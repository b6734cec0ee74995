"""Inputs and outputs anywhere: local paths and every filesystem URI pyarrow or fsspec knows.

A location is a string: a local path (``photos/a.png``), a ``file://`` URI, or a remote URI
(``s3://bucket/in/a.png``, ``gs://…``, ``abfs://…``, ``hf://…``). Local locations go through
the project's own file code (``atomic_path``); remote ones through ``pyarrow.fs`` — the
layer Ray Data reads with — falling back to fsspec for schemes pyarrow lacks.

Remote writes are atomic the object-store way: the bytes go to a hidden temporary key
beside the target (``.{stem}.{random}.part{suffix}``, the name ``atomic_path`` gives its
temporary files) and are then moved onto the target, so a reader sees the old object or
the whole new one, never a part.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterable

from instantmesh_cli.errors import ImeshError, InputError, UsageError

if TYPE_CHECKING:
    import pyarrow.fs

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")


def scheme(location: str) -> str | None:
    """``s3`` for ``s3://b/k``; None for a plain path (one letter before ``:`` is a Windows drive)."""
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def local_path(location: str) -> Path | None:
    """The local file a location names (plain paths and ``file://`` URIs); None for remote ones."""
    kind = scheme(location)
    if kind is None:
        return Path(location).expanduser()
    if kind in ("file", "local"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(location).path))
    return None


def is_remote(location: str) -> bool:
    return local_path(location) is None


def join(folder: str, name: str | PurePosixPath) -> str:
    """``folder`` (a path or URI, with or without a trailing slash) / ``name``."""
    return f"{folder.rstrip('/')}/{PurePosixPath(name).as_posix()}"


def filesystem(uri: str) -> "tuple[pyarrow.fs.FileSystem, str]":
    """The filesystem of a URI and the path inside it; one-line errors. Filesystems are made once
    per bucket (or host, or container) and its options: making one may cost a request (S3 asks for
    the bucket's region), and a batch names thousands of files in the same few places."""
    from urllib.parse import urlsplit

    local = local_path(uri)
    if local is not None:
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), str(local)
    parts = urlsplit(uri)
    fs, root_path, fsspec_fs = _root_filesystem(f"{parts.scheme}://{parts.netloc}" + (f"?{parts.query}" if parts.query else ""))
    if fsspec_fs is not None:
        return fs, fsspec_fs._strip_protocol(f"{parts.scheme}://{parts.netloc}{parts.path}")
    inner = parts.path.lstrip("/")
    return fs, f"{root_path.rstrip('/')}/{inner}" if inner else root_path


@functools.lru_cache(maxsize=64)
def _root_filesystem(root: str):
    """(pyarrow filesystem, its path for ``root``, the fsspec filesystem behind it or None)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(root)
        return fs, path, None
    except pa.ArrowInvalid:
        pass  # not a pyarrow scheme: try fsspec's registry
    except (OSError, pa.ArrowException) as exc:
        raise ImeshError(f"cannot open {root}: {_one_line(exc)}") from None
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise UsageError(f"{root}: pyarrow cannot open {scheme(root)}:// URIs and fsspec is not installed") from None
    try:
        fs, path = url_to_fs(root)
    except (ValueError, ImportError) as exc:  # unknown protocol, or its fsspec package is missing
        raise UsageError(f"cannot open {root}: {_one_line(exc)}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path, fs


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------- listing


def list_images(uri: str, *, recursive: bool, suffixes: Iterable[str]) -> "list[tuple[str, PurePosixPath]] | None":
    """The image files under a remote folder URI as (URI, sub-folder below it), sorted;
    None when ``uri`` is not a folder (a file, or nothing: the caller keeps it as one input)."""
    import pyarrow.fs as pafs

    fs, root = filesystem(uri)
    try:
        info = fs.get_file_info(root)
        if info.type != pafs.FileType.Directory:
            return None
        found = fs.get_file_info(pafs.FileSelector(root, recursive=recursive))
    except OSError as exc:
        raise ImeshError(f"cannot list {uri}: {_one_line(exc)}") from None
    wanted = {s.lower() for s in suffixes}
    out = []
    base = root.rstrip("/")
    for entry in sorted(found, key=lambda e: e.path):
        if entry.type == pafs.FileType.File and PurePosixPath(entry.path).suffix.lower() in wanted:
            relative = PurePosixPath(entry.path[len(base):].lstrip("/"))
            out.append((join(uri, relative), relative.parent))
    return out


def is_folder(location: str) -> bool:
    path = local_path(location)
    if path is not None:
        return path.is_dir()
    import pyarrow.fs as pafs

    fs, inner = filesystem(location)
    try:
        return fs.get_file_info(inner).type == pafs.FileType.Directory
    except OSError as exc:
        raise ImeshError(f"cannot look at {location}: {_one_line(exc)}") from None


def existing(locations: list[str]) -> list[bool]:
    """Whether each location exists as a file (one metadata call per filesystem, not per file)."""
    import pyarrow.fs as pafs

    answers: dict[int, bool] = {}
    groups: dict[int, tuple["pyarrow.fs.FileSystem", list[tuple[int, str, str]]]] = {}
    for i, location in enumerate(locations):
        path = local_path(location)
        if path is not None:
            answers[i] = path.is_file()
            continue
        fs, inner = filesystem(location)
        groups.setdefault(id(fs), (fs, []))[1].append((i, location, inner))
    for fs, members in groups.values():
        try:
            infos = fs.get_file_info([inner for _, _, inner in members])
        except OSError as exc:
            raise ImeshError(f"cannot look at {members[0][1]}: {_one_line(exc)}") from None
        for (i, _, _), info in zip(members, infos):
            answers[i] = info.type == pafs.FileType.File
    return [answers[i] for i in range(len(locations))]


# ---------------------------------------------------------------------------- reading and writing


def read_bytes(uri: str, label: str) -> bytes:
    """A remote object's bytes; a missing or unreadable one is an :class:`InputError` naming ``label``,
    in the words the local reader uses."""
    import pyarrow.fs as pafs

    fs, inner = filesystem(uri)
    try:
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{label}: no such file")
        if info.type == pafs.FileType.Directory:
            raise InputError(f"{label} is a directory, not an image")
        with fs.open_input_stream(inner) as stream:
            return stream.read()
    except OSError as exc:
        raise InputError(f"cannot read {label}: {_one_line(exc)}") from None


def _temporary_name(target: str) -> str:
    name = PurePosixPath(target)
    return str(name.with_name(f".{name.stem}.{uuid.uuid4().hex[:12]}.part{name.suffix}"))


def publish(local: Path, uri: str) -> None:
    """Copy a finished local file to ``uri`` atomically: a temporary key beside it, then a move."""
    fs, target = filesystem(uri)
    temporary = _temporary_name(target)
    parent = str(PurePosixPath(target).parent)
    try:
        fs.create_dir(parent, recursive=True)  # a no-op on object stores; real folders elsewhere
        with open(local, "rb") as src, fs.open_output_stream(temporary) as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)
        fs.move(temporary, target)
    except BaseException as exc:
        try:
            fs.delete_file(temporary)
        except Exception:  # noqa: BLE001 - nothing was written, or the store is gone: the error below says why
            pass
        if isinstance(exc, OSError):
            raise ImeshError(f"cannot write {uri}: {_one_line(exc)}") from None
        raise


def sweep_temporaries(targets: Iterable[str]) -> int:
    """Remove the temporary files of earlier attempts at these targets (a worker killed while
    writing leaves its ``.{stem}.*.part{suffix}``); one listing per folder. The count removed."""
    import pyarrow.fs as pafs

    folders: dict[str, set[str]] = {}
    for target in targets:
        name = PurePosixPath(target.rstrip("/")).name
        folder = target[: len(target.rstrip("/")) - len(name)] or "./"
        folders.setdefault(folder, set()).add(name)
    removed = 0
    for folder, names in folders.items():
        patterns = [re.compile(rf"^\.{re.escape(PurePosixPath(n).stem)}\.[^./]+\.part{re.escape(PurePosixPath(n).suffix)}$")
                    for n in names]
        path = local_path(folder)
        if path is not None:
            if not path.is_dir():
                continue
            for entry in path.iterdir():
                if any(p.match(entry.name) for p in patterns):
                    try:
                        entry.unlink()
                        removed += 1
                    except FileNotFoundError:
                        pass
            continue
        fs, inner = filesystem(folder)
        try:
            entries = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
        except OSError:
            continue
        for entry in entries:
            if entry.type == pafs.FileType.File and any(p.match(entry.base_name) for p in patterns):
                try:
                    fs.delete_file(entry.path)
                    removed += 1
                except OSError:
                    pass
    return removed


def absolute(location: str) -> str:
    """A local location as an absolute path (Ray workers run in other folders); URIs unchanged."""
    path = local_path(location)
    if path is None:
        return location
    return os.path.abspath(path)
