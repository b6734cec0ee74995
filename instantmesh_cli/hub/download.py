"""Downloading one file through huggingface_hub's own public ``hf_hub_download``.

huggingface_hub does the transfer: the standard cache layout (or a plain folder
with ``local_dir``), resuming a connection that breaks off with HTTP Range
requests within the call, hf_xet for Xet-backed files when it is installed, its
own download lock. imesh adds around it:

- the pinned revision of every file (never a moving branch unless asked);
- one bounded metadata request (``IMESH_HUB_TIMEOUT``) before the download: an
  unreachable Hub fails in seconds rather than after huggingface_hub's ~23 s of
  retries, and a file that cannot match the registry's size / sha256 is refused
  before its bytes are fetched;
- verification of the result (size, sha256 or git sha1), one retry from scratch
  if it fails;
- one-line errors with the fix;
- imesh's ``progress(done, total)`` callback, fed from a tqdm class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.std import tqdm

from instantmesh_cli import settings
from instantmesh_cli.errors import WeightsError
from instantmesh_cli.hub.errors import (CorruptWeightsError, DownloadInterruptedError, HubUnreachableError,
                                        MissingWeightsError)
from instantmesh_cli.hub.locate import remove_cached
from instantmesh_cli.hub.offline import missing_offline
from instantmesh_cli.hub.paths import hub_timeout
from instantmesh_cli.hub.verify import check_remote, problem
from instantmesh_cli.settings import HubFile

# Progress callback: (bytes done, total bytes or None). Called during downloads.
Progress = Callable[[int, "int | None"], None]


class _CallbackBar(tqdm):
    """A tqdm that draws nothing and reports its count to ``callback`` instead.

    imesh draws its own progress (rich) from the callback; a second, tqdm-drawn
    bar on stderr would tear through it, so this bar is always disabled and
    counts for itself (a disabled tqdm ignores ``update``).
    """

    callback: Progress | None = None

    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        kwargs.pop("name", None)  # some huggingface_hub versions pass it to any tqdm class
        super().__init__(*args, **kwargs)
        self._report()

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0
        self._report()

    # Having these makes huggingface_hub's Xet path use this one bar for both its
    # network-bytes and written-bytes counts; only written bytes are reported.
    def update_transfer(self, n: float | None = 1) -> None:
        pass

    def set_transfer_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def _report(self) -> None:
        if self.callback is not None:
            self.callback(int(self.n), int(self.total) if self.total else None)


def progress_bar_class(progress: Progress | None) -> type[tqdm]:
    """A tqdm class for ``hf_hub_download(tqdm_class=...)`` that feeds ``progress``.

    huggingface_hub takes a class, not an instance, hence one class per callback.
    It makes one bar per file (its HTTP retries reuse it; its Xet path does too
    because the class has ``update_transfer``), so the callback sees one count per file.
    """
    return type("ImeshDownloadBar", (_CallbackBar,), {"callback": staticmethod(progress) if progress else None})


@dataclass(frozen=True)
class Remote:
    """What the Hub says about a file at a revision."""

    commit: str
    etag: str
    size: int | None


def _transport_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub 2.x talks through httpx2, 1.x through httpx, and lets their
    # transport errors through unwrapped: catch those of whichever is installed.
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def translate(exc: BaseException, hub_file: HubFile, *, transferring: bool) -> WeightsError | None:
    """The one-line imesh error for a huggingface_hub / transport error (``None``: not one of those)."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    repo, rev = hub_file.repo_id, hub_file.revision
    if isinstance(exc, hf.RevisionNotFoundError):
        return MissingWeightsError(f"revision {rev} of {repo} is not on the Hub",
                                   hint=f"set {settings.revision_env_var(repo)} to an existing commit")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return MissingWeightsError(f"{hub_file} is not in {repo} at {rev}")
    if isinstance(exc, hf.GatedRepoError):  # (a RepositoryNotFoundError: test it first)
        return WeightsError(f"{repo} is gated on the Hub",
                            hint="accept its terms on huggingface.co and run `hf auth login`")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return MissingWeightsError(f"repository {repo} was not found on {constants.ENDPOINT}")
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return missing_offline(hub_file, "is not on this machine")
    if isinstance(exc, hf.LocalEntryNotFoundError):  # huggingface_hub gave up reaching the Hub
        cause = exc.__cause__ or exc
        return HubUnreachableError(f"cannot reach the model hub at {constants.ENDPOINT} ({first_line(cause)})",
                                   hint=_UNREACHABLE_HINT)
    if isinstance(exc, hf.HfHubHTTPError):  # (an OSError: keep it before OSError)
        return WeightsError(f"the Hub refused {hub_file}: {first_line(exc)}")
    if isinstance(exc, _transport_errors()):
        if transferring:
            return DownloadInterruptedError(f"download of {hub_file} broke off ({first_line(exc)})",
                                       hint="check the network and run the command again")
        return HubUnreachableError(f"cannot reach the model hub at {constants.ENDPOINT} ({first_line(exc)})",
                                   hint=_UNREACHABLE_HINT)
    if isinstance(exc, OSError):
        if exc.errno is not None:  # the disk, not the network (no space, permissions…)
            return WeightsError(f"cannot save {hub_file}: {exc.strerror} ({exc.filename or 'cache'})",
                                hint="free disk space, or point HF_HUB_CACHE / --to at another disk")
        # huggingface_hub's size check after its retries ran out
        return DownloadInterruptedError(f"download of {hub_file} is incomplete ({first_line(exc)})",
                                   hint="check the network and run the command again")
    return None


_UNREACHABLE_HINT = ("check the network; without one, use --offline with --weights-dir DIR "
                     "(made by `imesh download --to DIR` on a connected machine)")


def remote_metadata(hub_file: HubFile) -> Remote:
    """Ask the Hub about ``hub_file`` at its revision: one request, bounded wait."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(hub_file.repo_id, hub_file.filename, revision=hub_file.revision)
    try:
        meta = get_hf_file_metadata(url, timeout=hub_timeout())
    except Exception as exc:  # noqa: BLE001 - translated below, or re-raised as it is
        err = translate(exc, hub_file, transferring=False)
        if err is None:
            raise
        raise err from None
    if not meta.commit_hash or not meta.etag:
        raise WeightsError(f"the Hub sent no commit/ETag for {hub_file}; is {constants.ENDPOINT} a Hub?")
    return Remote(commit=meta.commit_hash, etag=meta.etag, size=meta.size)


def download(hub_file: HubFile, *, local_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """Fetch ``hub_file`` from the Hub and return the verified local path.

    Into the huggingface_hub cache (the snapshot path), or with ``local_dir`` to
    ``local_dir/<filename>``. Callers have already ruled out a good local copy.
    """
    from huggingface_hub import hf_hub_download

    remote = remote_metadata(hub_file)
    check_remote(hub_file, remote.etag, remote.size)
    why = None
    for attempt in range(2):
        try:
            path = Path(hf_hub_download(
                hub_file.repo_id, hub_file.filename, revision=hub_file.revision, repo_type="model",
                local_dir=local_dir,
                # In a folder huggingface_hub would keep the file it finds there or copy the
                # cache's, both unchecked; callers come here only when neither is good.
                # After a failed check, the bytes are fetched again in the cache too.
                force_download=local_dir is not None or attempt > 0,
                etag_timeout=hub_timeout(), tqdm_class=progress_bar_class(progress)))
        except Exception as exc:  # noqa: BLE001
            err = translate(exc, hub_file, transferring=True)
            if err is None:
                raise
            raise err from None
        why = problem(path, hub_file, etag=remote.etag, expected_size=remote.size)
        if why is None:
            return path
        # Corrupted in transit, or the Hub changed the file under a branch name.
        if local_dir is None:
            remove_cached(path)
        else:
            path.unlink(missing_ok=True)
    raise CorruptWeightsError(f"download of {hub_file} is corrupted: {why}", hint="try again later")
