"""Model weights: find, download, verify and convert the files of the registry.

Where a file comes from, in order:

1. ``--weights-dir DIR`` / ``IMESH_WEIGHTS_DIR``: ``DIR/<repo_id>/<filename>``, the
   layout ``imesh download --to DIR`` writes (for machines without network);
2. the huggingface_hub cache (so weights fetched by other tools are reused);
3. a download from the Hub into that cache — unless offline (``--offline`` or
   ``HF_HUB_OFFLINE=1``), in which case a missing file is one clear error at once.

Every file is verified: its size and sha256 where the registry knows them, and
in any case the Hub's own content id (the ETag the cache names each blob after:
sha256 for LFS files, git blob sha1 for small text files). A successful check is
remembered per (file, size, mtime), so large files are hashed once, not per run.
A corrupted cache file is removed and fetched again.

Downloads resume: bytes go to ``<blob>.incomplete`` beside the cache blob, and a
cut connection — or a killed run — continues from there with an HTTP Range
request. (huggingface_hub's own ``hf_hub_download`` deletes its partial file
when a call fails, so it cannot resume a killed run; hence this small
downloader, which still writes the standard cache layout that huggingface_hub,
diffusers and transformers read.) Waiting for the network is bounded
(``IMESH_HUB_TIMEOUT``, default 10 s); an unreachable Hub fails fast.

Pickled checkpoints (``.ckpt``/``.bin``) are opened only with
``torch.load(weights_only=True)``, converted once to safetensors under
``IMESH_CACHE_DIR`` (default ``~/.cache/imesh``) and read memory-mapped from
then on. Nothing from the Hub is ever executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from instantmesh_cli import settings
from instantmesh_cli.errors import WeightsError
from instantmesh_cli.settings import HubFile
from instantmesh_cli.weights_format import load_state_dict, save_safetensors, tensor_dict, torch_load_weights_only

__all__ = [
    "FetchResult",
    "CorruptWeightsError",
    "HubUnreachableError",
    "MissingWeightsError",
    "Progress",
    "cache_dir",
    "download_command",
    "ensure",
    "export_to_dir",
    "fetch",
    "is_offline",
    "load_state_dict",
    "locate",
    "multiview_folder",
    "resolve_weights_dir",
    "weights_file",
]

# Progress callback: (bytes done, total bytes or None). Called during downloads.
Progress = Callable[[int, "int | None"], None]

MANIFEST_NAME = "imesh-manifest.json"
_CHUNK = 1 << 20
# Consecutive transport failures without new bytes before a download gives up,
# and the pause between tries (tests set it to 0).
_MAX_STALLED_TRIES = 5
_RETRY_WAIT_S = 1.0


class MissingWeightsError(WeightsError):
    """A file is not on this machine and cannot be fetched (offline, not on the Hub…)."""


class HubUnreachableError(MissingWeightsError):
    """The Hub could not be contacted (no network, DNS failure, timeout)."""


class CorruptWeightsError(WeightsError):
    """A copy failed verification (size / sha256) and could not be replaced."""


@dataclass(frozen=True)
class FetchResult:
    """Where a file was found and what had to be done for it."""

    path: Path
    status: str  # "ok" (present, verified) | "downloaded" | "copied" (from the cache) | "repaired" (bad copy replaced)
    source: str  # "weights-dir" | "cache" | "hub" | "dir"


# --------------------------------------------------------------------- settings
def cache_dir() -> Path:
    """imesh's own cache (converted checkpoints, verification stamps, folder views)."""
    return Path(os.environ.get("IMESH_CACHE_DIR") or Path.home() / ".cache" / "imesh").expanduser()


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``."""
    if offline is not None:
        return offline
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    return False


def resolve_weights_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    value = weights_dir if weights_dir is not None else os.environ.get("IMESH_WEIGHTS_DIR") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise WeightsError(f"weights folder {path} does not exist",
                           hint="create it with `imesh download --to DIR` on a connected machine")
    return path


def _timeout() -> float:
    try:
        return max(0.5, float(os.environ.get("IMESH_HUB_TIMEOUT", "10")))
    except ValueError:
        return 10.0


def download_command(hub_file: HubFile) -> str:
    """The command that fetches ``hub_file`` (named in offline errors)."""
    owners = [name for name in settings.VARIANTS
              if any(f.repo_id == hub_file.repo_id and f.filename == hub_file.filename
                     for f in settings.model_files(name))]
    model = settings.DEFAULT_VARIANT if not owners or settings.DEFAULT_VARIANT in owners else owners[0]
    return f"imesh download --model {model}"


def _missing_offline(hub_file: HubFile, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"{hub_file} ({hub_file.revision[:12]}) {why} and offline mode is on",
        hint=f"run `{download_command(hub_file)}` with network, or `imesh download --to DIR` "
        "on a connected machine and pass --weights-dir DIR here",
    )


# ------------------------------------------------------------------ verification
def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    if algo == "sha1":  # git blob id: sha1 over "blob <size>\0" + content
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _expected_ids(hub_file: HubFile, etag: str | None) -> dict[str, str]:
    """Content ids to check: sha256 (registry or LFS etag) and git sha1 (text-file etag)."""
    ids: dict[str, str] = {}
    if etag and len(etag) == 64:
        ids["sha256"] = etag.lower()
    elif etag and len(etag) == 40:
        ids["sha1"] = etag.lower()
    if hub_file.sha256:
        ids["sha256"] = hub_file.sha256.lower()
    return ids


def _stamp_path(path: Path, ids: dict[str, str]) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{sorted(ids.items())}"
    return cache_dir() / "verified" / hashlib.sha1(key.encode()).hexdigest()


def _problem(path: Path, hub_file: HubFile, etag: str | None = None,
             expected_size: int | None = None) -> str | None:
    """Why ``path`` is not a good copy of ``hub_file`` (``None`` if it is)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    want = hub_file.size if hub_file.size is not None else expected_size
    if want is not None and size != want:
        return f"size {size} bytes, expected {want}"
    ids = _expected_ids(hub_file, etag)
    if not ids:
        return None
    stamp = _stamp_path(path, ids)
    if stamp.exists():
        return None
    for algo, want_id in ids.items():
        got = _file_digest(path, algo)
        if got != want_id:
            return f"{algo} {got[:12]}…, expected {want_id[:12]}…"
    with contextlib.suppress(OSError):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    return None


# ------------------------------------------------------------------ HF cache side
def _hf():
    import huggingface_hub
    from huggingface_hub import constants, file_download

    return huggingface_hub, constants, file_download


def _cache_root() -> Path:
    _, constants, _ = _hf()
    return Path(constants.HF_HUB_CACHE)


def _storage_folder(repo_id: str) -> Path:
    _, _, file_download = _hf()
    return _cache_root() / file_download.repo_folder_name(repo_id=repo_id, repo_type="model")


def _cached(hub_file: HubFile) -> Path | None:
    huggingface_hub, _, _ = _hf()
    found = huggingface_hub.try_to_load_from_cache(
        hub_file.repo_id, hub_file.filename, revision=hub_file.revision, repo_type="model")
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found)
    return None


def _blob_etag(path: Path) -> str | None:
    """The content id a cache blob is named after (``None`` outside the cache)."""
    real = path.resolve()
    if real.parent.name == "blobs":
        return real.name
    return None


def _remove_cached(path: Path) -> None:
    real = path.resolve()
    for p in (path, real):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _in_weights_dir(hub_file: HubFile, weights_dir: Path) -> Path:
    return weights_dir / hub_file.repo_id / hub_file.filename


def _manifest_entry(weights_dir: Path, hub_file: HubFile) -> dict | None:
    path = weights_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    entry = data.get("files", {}).get(f"{hub_file.repo_id}/{hub_file.filename}")
    if isinstance(entry, dict) and entry.get("revision") == hub_file.revision:
        return entry
    return None


def _check_weights_dir_file(hub_file: HubFile, weights_dir: Path) -> tuple[Path, str | None] | None:
    path = _in_weights_dir(hub_file, weights_dir)
    if not path.is_file():
        return None
    entry = _manifest_entry(weights_dir, hub_file) or {}
    etag = entry.get("sha256")
    return path, _problem(path, hub_file, etag=etag, expected_size=entry.get("size"))


def locate(hub_file: HubFile, *, weights_dir: str | os.PathLike[str] | None = None,
           verify: bool = False) -> Path | None:
    """Where ``hub_file`` is on this machine, without any network access (``None`` if nowhere).

    ``verify`` also checks the content (hashing a large file the first time);
    otherwise only presence and the known size are checked.
    """
    wdir = resolve_weights_dir(weights_dir)
    candidates: list[tuple[Path, str | None]] = []
    if wdir is not None:
        p = _in_weights_dir(hub_file, wdir)
        if p.is_file():
            entry = _manifest_entry(wdir, hub_file) or {}
            candidates.append((p, entry.get("sha256")))
    cached = _cached(hub_file)
    if cached is not None:
        candidates.append((cached, _blob_etag(cached)))
    for path, etag in candidates:
        if verify:
            if _problem(path, hub_file, etag=etag) is None:
                return path
        elif hub_file.size is None or path.stat().st_size == hub_file.size:
            return path
    return None


# ------------------------------------------------------------------- downloading
def _httpx_module():
    from huggingface_hub.utils import get_session

    import importlib

    return importlib.import_module(type(get_session()).__module__.split(".")[0])


@dataclass
class _Remote:
    url: str
    commit: str
    etag: str
    size: int | None


def _metadata(hub_file: HubFile) -> _Remote:
    """HEAD the file on the Hub (one try, bounded wait); map failures to one-line errors."""
    huggingface_hub, constants, file_download = _hf()
    from huggingface_hub import errors as hf_errors

    httpx = _httpx_module()
    url = file_download.hf_hub_url(hub_file.repo_id, hub_file.filename, revision=hub_file.revision)
    try:
        meta = file_download.get_hf_file_metadata(url, timeout=_timeout())
    except hf_errors.RevisionNotFoundError:
        raise MissingWeightsError(
            f"revision {hub_file.revision} of {hub_file.repo_id} is not on the Hub",
            hint=f"set {settings.revision_env_var(hub_file.repo_id)} to an existing commit") from None
    except hf_errors.RemoteEntryNotFoundError:
        raise MissingWeightsError(f"{hub_file} is not in {hub_file.repo_id} at {hub_file.revision}") from None
    except hf_errors.GatedRepoError:
        raise WeightsError(f"{hub_file.repo_id} is gated on the Hub",
                           hint="accept its terms on huggingface.co and run `hf auth login`") from None
    except hf_errors.RepositoryNotFoundError:
        raise MissingWeightsError(f"repository {hub_file.repo_id} was not found on {constants.ENDPOINT}") from None
    except hf_errors.OfflineModeIsEnabled:
        raise _missing_offline(hub_file, "is not on this machine") from None
    except hf_errors.HfHubHTTPError as exc:  # (an OSError subclass: keep this before OSError)
        raise WeightsError(f"the Hub refused {hub_file}: {exc}".splitlines()[0]) from None
    except (httpx.TransportError, OSError) as exc:
        raise HubUnreachableError(
            f"cannot reach the model hub at {constants.ENDPOINT} ({type(exc).__name__}: {exc})",
            hint="check the network; without one, use --offline with --weights-dir DIR "
            "(made by `imesh download --to DIR` on a connected machine)") from None
    if not meta.commit_hash or not meta.etag:
        raise WeightsError(f"the Hub sent no commit/ETag for {hub_file}; is {constants.ENDPOINT} a Hub?")
    return _Remote(url=meta.location or url, commit=meta.commit_hash, etag=meta.etag, size=meta.size)


def _stream(remote: _Remote, part: Path, progress: Progress | None) -> None:
    """Download ``remote`` into ``part``, resuming from whatever ``part`` already holds."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    from huggingface_hub import errors as hf_errors

    httpx = _httpx_module()
    session = get_session()
    total = remote.size
    stalled = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if total is not None and have > total:
            part.unlink()
            have = 0
        if total is not None and have == total:
            return
        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        before = have
        try:
            with session.stream("GET", remote.url, headers=headers, timeout=_timeout(),
                                follow_redirects=True) as response:
                if response.status_code == 416 and have:
                    part.unlink()  # our partial file is not a prefix of the remote one
                    continue
                try:
                    hf_raise_for_status(response)
                except hf_errors.HfHubHTTPError as exc:
                    raise WeightsError(f"the Hub refused the download: {exc}".splitlines()[0]) from None
                mode = "ab"
                if have and response.status_code != 206:
                    mode, have = "wb", 0  # server ignored the Range: start over
                with open(part, mode) as out:
                    for chunk in response.iter_bytes(_CHUNK):
                        out.write(chunk)
                        have += len(chunk)
                        if progress is not None:
                            progress(have, total)
            if total is None or have >= total:
                return
            raise httpx.RemoteProtocolError("connection closed before the end of the file")
        except httpx.TransportError as exc:
            stalled = 0 if have > before else stalled + 1
            if stalled >= _MAX_STALLED_TRIES:
                raise HubUnreachableError(
                    f"download of {remote.url.rsplit('/', 1)[-1]} broke off at {have} bytes ({exc})",
                    hint="run the command again to resume") from None
            time.sleep(_RETRY_WAIT_S * stalled)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An inter-process lock for work on ``path`` (lock files live in imesh's cache, not beside it)."""
    from filelock import FileLock

    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(str(path.absolute()).encode()).hexdigest()
    with FileLock(str(locks / f"{name}.lock")):
        yield


def _download_to(hub_file: HubFile, remote: _Remote, dest: Path, progress: Progress | None) -> None:
    """Fetch ``remote`` to ``dest`` (atomic rename), verified against registry and ETag."""
    if hub_file.sha256 and len(remote.etag) == 64 and remote.etag.lower() != hub_file.sha256.lower():
        raise CorruptWeightsError(
            f"the Hub serves {hub_file} with sha256 {remote.etag[:12]}…, "
            f"but revision {hub_file.revision[:12]} should have {hub_file.sha256[:12]}…")
    if hub_file.size is not None and remote.size is not None and remote.size != hub_file.size:
        raise CorruptWeightsError(f"the Hub serves {hub_file} with {remote.size} bytes, expected {hub_file.size}")
    part = dest.with_name(dest.name + ".incomplete")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(part):
        if dest.is_file() and _problem(dest, hub_file, remote.etag, remote.size) is None:
            return
        for attempt in (1, 2):
            _stream(remote, part, progress)
            why = _problem(part, hub_file, remote.etag, remote.size)
            if why is None:
                os.replace(part, dest)
                return
            part.unlink()  # corrupted in transit (or a stale partial file): once more from scratch
        raise CorruptWeightsError(f"download of {hub_file} is corrupted: {why}", hint="try again later")


def _place_in_cache(hub_file: HubFile, remote: _Remote, progress: Progress | None) -> Path:
    """Download into the huggingface_hub cache layout and return the snapshot path."""
    storage = _storage_folder(hub_file.repo_id)
    blob = storage / "blobs" / remote.etag
    _download_to(hub_file, remote, blob, progress)
    pointer = storage / "snapshots" / remote.commit / hub_file.filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        pointer.unlink()
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symlinks (some Windows set-ups): huggingface_hub copies too
        shutil.copy2(blob, pointer)
    if remote.commit != hub_file.revision:  # a branch name: record where it points
        ref = storage / "refs" / hub_file.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(remote.commit)
    return pointer


# ----------------------------------------------------------------------- public
def ensure(hub_file: HubFile, *, offline: bool | None = None,
           weights_dir: str | os.PathLike[str] | None = None,
           progress: Progress | None = None) -> FetchResult:
    """Make ``hub_file`` available locally and say how (see :func:`fetch`)."""
    wdir = resolve_weights_dir(weights_dir)
    if wdir is not None:
        found = _check_weights_dir_file(hub_file, wdir)
        if found is not None:
            path, why = found
            if why is not None:
                raise CorruptWeightsError(f"{path} is corrupted: {why}",
                                   hint="copy it again, or run `imesh download --to DIR` again to repair it")
            return FetchResult(path, "ok", "weights-dir")
    repaired = False
    cached = _cached(hub_file)
    if cached is not None:
        why = _problem(cached, hub_file, etag=_blob_etag(cached))
        if why is None:
            return FetchResult(cached, "ok", "cache")
        if is_offline(offline):
            raise CorruptWeightsError(f"{hub_file} in the cache is corrupted ({why}) and offline mode is on",
                               hint=f"run `{download_command(hub_file)}` with network to fetch it again")
        _remove_cached(cached)
        repaired = True
    if is_offline(offline):
        raise _missing_offline(hub_file, "is not on this machine")
    remote = _metadata(hub_file)
    path = _place_in_cache(hub_file, remote, progress)
    return FetchResult(path, "repaired" if repaired else "downloaded", "hub")


def fetch(hub_file: HubFile, *, offline: bool | None = None,
          weights_dir: str | os.PathLike[str] | None = None,
          progress: Progress | None = None) -> Path:
    """A verified local path of ``hub_file``.

    Looks in ``weights_dir`` (or ``IMESH_WEIGHTS_DIR``), then the huggingface_hub
    cache, then downloads (resumable) unless ``offline`` (default: ``HF_HUB_OFFLINE``).
    Raises :class:`WeightsError` with the fix when it cannot.
    """
    return ensure(hub_file, offline=offline, weights_dir=weights_dir, progress=progress).path


def export_to_dir(hub_file: HubFile, target_dir: str | os.PathLike[str], *,
                  offline: bool | None = None, progress: Progress | None = None) -> FetchResult:
    """Put a verified copy of ``hub_file`` at ``target_dir/<repo_id>/<filename>``.

    Used by ``imesh download --to DIR``. A copy already there is checked (and
    replaced if bad); otherwise it comes from the cache, or is downloaded straight
    into ``target_dir`` (resumable). ``target_dir/imesh-manifest.json`` records
    revision, size and sha256 so that later runs can verify the folder offline.
    """
    target_dir = Path(target_dir).expanduser()
    dest = _in_weights_dir(hub_file, target_dir)
    cached = _cached(hub_file)
    if cached is not None and _problem(cached, hub_file, etag=_blob_etag(cached)) is not None:
        cached = None  # a bad cache copy is not a source (fetch() repairs the cache itself)
    status = "ok"
    if dest.is_file():
        entry = _manifest_entry(target_dir, hub_file) or {}
        etag = entry.get("sha256") or (_blob_etag(cached) if cached is not None else None)
        remote = None
        if not etag and not hub_file.sha256 and not is_offline(offline):
            remote = _metadata(hub_file)  # nothing here to verify against: ask the Hub
            etag = remote.etag
        if etag or hub_file.sha256:
            why = _problem(dest, hub_file, etag=etag, expected_size=entry.get("size"))
            if why is None:
                _record_manifest(target_dir, hub_file, dest)
                return FetchResult(dest, "ok", "dir")
            dest.unlink()
            status = "repaired"
        else:
            raise _missing_offline(hub_file, f"in {target_dir} cannot be verified")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if cached is not None:
        tmp = dest.with_name(dest.name + ".incomplete")
        shutil.copyfile(cached, tmp)
        os.replace(tmp, dest)
        source = "cache"
    else:
        if is_offline(offline):
            raise _missing_offline(hub_file, "is not on this machine")
        remote = _metadata(hub_file)
        _download_to(hub_file, remote, dest, progress)
        source = "hub"
    _record_manifest(target_dir, hub_file, dest)
    if status == "ok":
        status = "downloaded" if source == "hub" else "copied"
    return FetchResult(dest, status, source)


def _record_manifest(target_dir: Path, hub_file: HubFile, path: Path) -> None:
    from instantmesh_cli.fileio import write_bytes_atomic

    manifest = target_dir / MANIFEST_NAME
    with _locked(manifest):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            data = {}
        files = data.setdefault("files", {})
        key = f"{hub_file.repo_id}/{hub_file.filename}"
        old = files.get(key) or {}
        size = path.stat().st_size
        if old.get("revision") == hub_file.revision and old.get("size") == size and old.get("sha256"):
            return
        files[key] = {"revision": hub_file.revision, "size": size, "sha256": _file_digest(path, "sha256")}
        data["format"] = 1
        write_bytes_atomic(manifest, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


# ------------------------------------------------------------- folders and tensors
def multiview_folder(*, original_unet: bool = False, offline: bool | None = None,
                     weights_dir: str | os.PathLike[str] | None = None,
                     progress: Progress | None = None) -> Path:
    """A local folder laid out like sudo-ai/zero123plus-v1.2 (model_index.json, vae/, unet/config.json…).

    Usable with ``from_pretrained(folder, subfolder=...)``. The sudo-ai UNet weights
    are only included with ``original_unet`` (InstantMesh's white-background UNet,
    ``weights_file(settings.white_unet_file())``, replaces all of them).
    """
    files = settings.zero123plus_files(original_unet=original_unet)
    paths = [fetch(f, offline=offline, weights_dir=weights_dir, progress=progress) for f in files]
    roots = {_root_of(path, f.filename) for path, f in zip(paths, files)}
    if len(roots) == 1 and None not in roots:
        return roots.pop()  # type: ignore[return-value]
    # Files come from different places (weights dir + cache): link them into one folder.
    revision = files[0].revision
    folder = cache_dir() / "folders" / f"{files[0].repo_id.replace('/', '--')}@{revision}"
    for path, f in zip(paths, files):
        link = folder / f.filename
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.resolve() == path.resolve():
                continue
            link.unlink()
        try:
            link.symlink_to(path.resolve())
        except OSError:
            shutil.copy2(path, link)
    return folder


def _root_of(path: Path, filename: str) -> Path | None:
    parts = Path(filename).parts
    if path.parts[-len(parts):] != parts:
        return None
    return Path(*path.parts[:-len(parts)])


def _content_key(path: Path, hub_file: HubFile) -> str:
    """A name for the file's content that changes whenever the content does."""
    etag = _blob_etag(path)
    if etag:
        return etag
    if hub_file.sha256:
        return hub_file.sha256
    st = path.resolve().stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def weights_file(hub_file: HubFile, *, offline: bool | None = None,
                 weights_dir: str | os.PathLike[str] | None = None,
                 progress: Progress | None = None) -> Path:
    """A safetensors path holding ``hub_file``'s tensors.

    Safetensors files are returned as they are. Pickled ``.ckpt``/``.bin`` files are
    opened once with ``torch.load(weights_only=True)`` (mmap where possible) and
    converted to ``IMESH_CACHE_DIR/converted/…`` keyed by their content id; for a
    Lightning checkpoint that is ``ckpt["state_dict"]`` with its original key names.
    """
    path = fetch(hub_file, offline=offline, weights_dir=weights_dir, progress=progress)
    if not hub_file.is_pickle:
        return path
    key = _content_key(path, hub_file)
    target = (cache_dir() / "converted" / hub_file.repo_id.replace("/", "--") / key
              / (Path(hub_file.filename).stem + ".safetensors"))
    if target.is_file():
        return target
    with _locked(target):
        if target.is_file():
            return target
        tensors = tensor_dict(torch_load_weights_only(path), hub_file.filename)
        save_safetensors(tensors, target, {
            "format": "pt",
            "source": f"{hub_file.repo_id}/{hub_file.filename}@{hub_file.revision}",
            "source_id": key,
        })
    return target


def present(files: Iterable[HubFile], *, weights_dir: str | os.PathLike[str] | None = None
            ) -> dict[HubFile, Path | None]:
    """Where each file is on this machine (no network, no hashing); for `imesh doctor`."""
    return {f: locate(f, weights_dir=weights_dir) for f in files}
