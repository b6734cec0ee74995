"""Atomic output files: write to a temporary file in the target folder, then rename.

An interrupted run therefore never leaves a half-written output behind, and an
existing file is only replaced once the new one is complete.

Permissions: ``mkstemp`` creates its file 0600, and the rename carries that mode onto
the target (also onto a file that was 0644 before). Outputs instead get
``0666 & ~umask``, the mode ``open(path, "w")`` would give them.

Beside them, the two things imesh's caches do with files: name an entry by the files it was
computed from (:func:`files_signature`) and prune to the newest entries (:func:`keep_newest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

_PROC_STATUS = "/proc/self/status"


def _umask_from_proc() -> int | None:
    """The umask as Linux reports it (kernel 4.7+), without changing it; None where unavailable."""
    try:
        with open(_PROC_STATUS, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    # Setting the umask is the only portable way to read it. It is process-wide, so a
    # file another thread creates in between gets the mask set here (077: stricter, never
    # laxer than intended); hence it runs once, at import, and only where /proc cannot answer.
    old = os.umask(0o077)
    os.umask(old)
    return old


_FALLBACK_UMASK = None if _umask_from_proc() is not None else _umask_by_setting()


def current_umask() -> int:
    """The process umask: read afresh on Linux (so a later ``os.umask`` call counts), else as at import."""
    mask = _umask_from_proc()
    if mask is not None:
        return mask
    if _FALLBACK_UMASK is not None:
        return _FALLBACK_UMASK
    return _umask_by_setting()  # /proc answered at import but not now (e.g. unmounted): rare


def output_mode() -> int:
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffix so that libraries which choose a
    format from the file name (PIL, trimesh) still do the right thing. Writers must
    write into the existing temporary file (``write_bytes``, ``open(..., "w")``), not
    replace it, so the mode set here survives.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent)
    tmp_path = Path(tmp)
    try:
        try:
            os.fchmod(fd, output_mode())
        except OSError:
            pass  # filesystems without Unix modes (vfat, some network mounts) refuse; the content still counts
        finally:
            os.close(fd)
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def keep_newest(folder: Path, pattern: str, keep: int) -> None:
    """Delete all but the ``keep`` most recently modified files of ``folder`` that match ``pattern``: what a
    cache of one entry per environment does after writing, so that old environments' entries do not pile up."""
    for old in sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)[:-keep]:
        old.unlink(missing_ok=True)


def files_signature(files: Iterable[str | os.PathLike[str]], *extra: str) -> str:
    """A digest of each file's path (as given), size, modification time and inode, then of ``extra``.

    It changes when a file is rewritten, replaced (a new inode, also behind a symlink: ``stat``
    follows it) or touched, so an entry named by it is computed again instead of read stale;
    hashing the bytes instead would cost what the caches save. A missing file counts as one.
    """
    h = hashlib.sha256()
    for path in files:
        try:
            st = os.stat(path)
            h.update(f"{os.fspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
        except OSError:
            h.update(f"{os.fspath(path)}\0missing\n".encode())
    for item in extra:
        h.update(f"{item}\n".encode())
    return h.hexdigest()[:32]
