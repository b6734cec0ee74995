"""Downloading one model file over HTTP: resumable, verified, renamed into place.

For the rembg model files, which live on a GitHub release (or a mirror), not on the
Hugging Face Hub. The transfer uses httpx2, the HTTP client huggingface_hub itself
depends on here (no second HTTP stack):

- the bytes go to ``<target>.part``; a run that breaks off keeps them, and the next
  attempt (in the same call, or the next run) asks for the rest with ``Range``. A
  server that ignores ``Range`` (200 instead of 206) is read from the start again;
- the result is checked against the pinned md5 (and size, when known) before it is
  renamed onto the target, so the target name only ever holds a verified file;
- bounded waits: connecting waits ``IMESH_HUB_TIMEOUT`` seconds (as for the Hub), a
  stalled body :data:`READ_TIMEOUT_S`;
- every failure is one :class:`~instantmesh_cli.errors.WeightsError` line with the fix.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

from instantmesh_cli.errors import WeightsError
from instantmesh_cli.hub.download import Progress, first_line
from instantmesh_cli.hub.errors import CorruptWeightsError, DownloadInterruptedError, MissingWeightsError
from instantmesh_cli.hub.paths import hub_timeout, locked
from instantmesh_cli.hub.verify import file_digest

# A transfer that breaks off after some bytes resumes at once, up to this many attempts
# per call; past that the .part file waits for the next run.
ATTEMPTS = 4
# Longest silence in the middle of a body before the attempt counts as broken off.
READ_TIMEOUT_S = 30.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _BrokenOff(Exception):
    """A transfer that stopped after ``written`` new bytes (kept in the .part file)."""

    def __init__(self, cause: BaseException, written: int):
        super().__init__(str(cause))
        self.cause = cause
        self.written = written


class _StartOver(Exception):
    """The server cannot continue our .part file (it was removed): ask for the whole file."""


def part_path(target: Path) -> Path:
    """Where the bytes of ``target`` collect until they are verified."""
    return target.with_name(target.name + ".part")


def problem(path: Path, md5: str, size: int | None) -> str | None:
    """Why ``path`` is not the pinned file (``None``: it is)."""
    try:
        have = path.stat().st_size
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if size is not None and have != size:
        return f"size {have} bytes, expected {size}"
    got = file_digest(path, "md5")
    if got != md5.lower():
        return f"md5 {got}, expected {md5.lower()}"
    return None


def download_file(url: str, target: Path, *, md5: str, size: int | None = None,
                  progress: Progress | None = None) -> Path:
    """Fetch ``url`` to ``target`` and return ``target`` once its md5 (and ``size``) match.

    Resumes from ``<target>.part`` left by an earlier attempt. A verification failure
    removes the downloaded bytes and raises :class:`CorruptWeightsError`; an existing
    ``target`` is replaced only by a verified file.
    """
    try:
        return _download_file(url, target, md5=md5, size=size, progress=progress)
    except OSError as exc:  # the disk, not the network (no space, permissions…)
        raise WeightsError(f"cannot save {target.name}: {exc.strerror or exc} ({exc.filename or target.parent})",
                           hint="free disk space, or point U2NET_HOME / --to at another disk") from None


def _download_file(url: str, target: Path, *, md5: str, size: int | None, progress: Progress | None) -> Path:
    import httpx2 as httpx

    name = target.name
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=hub_timeout())
    # One process at a time per file: two writers appending to one .part would interleave.
    with locked(target), httpx.Client(timeout=timeout, follow_redirects=True) as client:
        attempt = 0
        while True:
            attempt += 1
            try:
                _transfer(client, url, part, size, progress)
                break
            except _StartOver as exc:
                if attempt >= ATTEMPTS:
                    raise DownloadInterruptedError(f"download of {name} from {_host(url)} cannot resume ({exc})",
                                                   hint="run the command again") from None
            except _BrokenOff as exc:
                if exc.written == 0 or attempt >= ATTEMPTS:
                    raise DownloadInterruptedError(
                        f"download of {name} from {_host(url)} broke off ({first_line(exc.cause)}); "
                        f"{_size_of(part)} kept in {part.name}",
                        hint="run the command again: it resumes where it stopped") from None
                time.sleep(0.2 * attempt)
            except httpx.TransportError as exc:  # before any byte of the body: no server, DNS, timeout
                raise MissingWeightsError(f"cannot reach {_host(url)} for {name} ({first_line(exc)})",
                                          hint=unreachable_hint(url)) from None
        why = problem(part, md5, size)
        if why is not None:
            part.unlink(missing_ok=True)
            raise CorruptWeightsError(
                f"download of {name} from {_host(url)} is corrupted ({why}); the downloaded file was removed",
                hint=f"run the command again; if it repeats, the server (or {_mirror_env()}) serves another file")
        part.replace(target)
    return target


def _transfer(client, url: str, part: Path, size: int | None, progress: Progress | None) -> None:
    """One request: append the rest of the file to ``part`` (all of it, if the server ignores Range)."""
    import httpx2 as httpx

    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # not a prefix of this file: start over
        part.unlink()
        have = 0
    if size is not None and have == size:
        if progress is not None:
            progress(have, size)
        return  # complete already (a run stopped between the last byte and the check)
    # identity: Range offsets count the file's bytes, not those of a compressed stream.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    written = 0
    with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status == 416 and have:  # nothing past our end: not a prefix of the file it serves
            part.unlink()
            raise _StartOver("HTTP 416 to a Range request")
        if status not in (200, 206):
            raise _http_error(status, url)
        start = 0
        if status == 206:
            found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            start = int(found.group(1)) if found else -1
            if start != have:  # a range we did not ask for: read it all again
                part.unlink(missing_ok=True)
                raise _StartOver(f"asked for bytes from {have}, sent from {start}")
        total = _total(response, start, size)
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)  # whatever it holds, it is no prefix of the pinned file
            raise CorruptWeightsError(f"{_host(url)} serves {part.name.removesuffix('.part')} with {total} bytes, "
                                      f"expected {size}", hint=f"check the URL ({_mirror_env()})")
        done = start
        if progress is not None:
            progress(done, total)
        try:
            # 200 to a Range request: the server ignored it, so the file is rewritten from byte 0.
            with open(part, "ab" if start else "wb") as out:
                # No chunk_size: httpx would hold back up to that many received bytes, and lose
                # them when the connection breaks; as they arrive, every byte read is kept.
                for chunk in response.iter_raw():
                    out.write(chunk)
                    written += len(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except httpx.TransportError as exc:  # the connection broke off mid-body (RemoteProtocolError, ReadTimeout…)
            raise _BrokenOff(exc, written) from None


def _total(response, start: int, size: int | None) -> int | None:
    found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if found and found.group(3) != "*":
        return int(found.group(3))
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return start + int(length)
    return size


def _http_error(status: int, url: str) -> WeightsError:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    if status in (404, 410):
        mirrored = bool(os.environ.get(_mirror_env(), "").strip())
        return MissingWeightsError(f"{_host(url)} has no {name} (HTTP {status})",
                                   hint=f"check {_mirror_env()}: it must hold rembg's release files by name"
                                   if mirrored else "rembg's release moved it: a newer imesh knows where")
    return WeightsError(f"{_host(url)} refused {name} (HTTP {status})",
                        hint="try again later, or set " + _mirror_env() + " to a mirror")


def unreachable_hint(url: str) -> str:
    """The fix for a model server this machine cannot reach."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return (f"check the network; without access to {_host(url)} set {_mirror_env()} to a mirror holding {name}, "
            "or run `imesh download --to DIR` on a connected machine and pass --weights-dir DIR")


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _mirror_env() -> str:
    from instantmesh_cli.images.matting_pins import MIRROR_ENV

    return MIRROR_ENV


def _size_of(path: Path) -> str:
    with contextlib.suppress(OSError):
        return f"{path.stat().st_size} bytes"
    return "nothing"
