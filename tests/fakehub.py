"""A small local stand-in for the Hugging Face Hub, for tests.

It speaks the HTTP routes the real ``huggingface_hub`` client uses (see
reference/deps.md §2c), so tests exercise the real client code paths —
``hf_hub_download``, ``snapshot_download``, diffusers/transformers
``from_pretrained`` — against tiny files:

- ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with ``X-Repo-Commit``,
  ``ETag`` (git-sha1 for small text files, sha256 "LFS" ids for the rest, as the
  Hub does), ``Content-Length`` and HTTP ``Range`` requests (206 + ``Content-Range``),
- ``GET /api/models/{repo}[/revision/{rev}]`` (model info with ``sha`` and ``siblings``),
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (recursive file listing),
- errors carry ``X-Error-Code`` (``RepoNotFound`` / ``RevisionNotFound`` /
  ``EntryNotFound``), as the Hub sends them.

Repositories hold several commits, each a full ``path -> bytes`` mapping, and
named refs (``main`` …) pointing at commits, so a test can check that the
pinned commit — not the branch head — is the one served.

``hf_hub_download`` needs only the ``resolve`` route: a ``HEAD`` for the commit,
ETag and size, then a ``GET`` (with ``Range`` when it resumes a broken transfer).
No ``X-Xet-Hash`` header is sent, so huggingface_hub takes its plain-HTTP path even
with hf_xet installed (the Xet path needs the Hub's Xet storage service).

Faults for resilience tests: :meth:`FakeHub.cut_next` makes the next download(s)
of a file stop after N bytes (the connection is closed mid-body);
:meth:`FakeHub.throttle` serves a file slowly (to kill a client mid-file);
:meth:`FakeHub.down` closes the listening socket (connection refused) and
:meth:`FakeHub.hanging` accepts connections but answers nothing, each for the
duration of a ``with`` block; :meth:`FakeHub.reset_faults` drops pending
cuts and throttles. Every request is logged (:attr:`FakeHub.log`).

Every response carries ``Connection: close``: with keep-alive the client kept
talking to handler threads after the server went down, which made "server down"
tests pass for the wrong reason (reference/deps.md §2c).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote, unquote, urlsplit

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
# The Hub stores these as plain git objects (ETag = git blob sha1); the rest as
# LFS/Xet objects whose ETag is the sha256 of the content.
_GIT_SUFFIXES = (".json", ".txt", ".md", ".yaml", ".yml", ".py", ".gitattributes")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def etag_for(path: str, data: bytes) -> str:
    """The ETag the Hub gives a file: git blob sha1 for text, sha256 for LFS files."""
    if path.endswith(_GIT_SUFFIXES):
        return git_blob_sha1(data)
    return hashlib.sha256(data).hexdigest()


@dataclass
class Request:
    method: str
    path: str  # URL path, unquoted
    range: str | None
    status: int = 0

    @property
    def is_file_body(self) -> bool:
        """A GET of a file's content (what costs bandwidth)."""
        return self.method == "GET" and "/resolve/" in self.path and not self.path.startswith("/api/")


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    counter: int = 0


class FakeHub:
    """The server plus its content. Start with :meth:`start`; ``endpoint`` is its URL."""

    def __init__(self) -> None:
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.RLock()
        self._cuts: dict[tuple[str, str], list[int]] = {}
        self._throttle: dict[tuple[str, str], int] = {}
        self._hang = threading.Event()
        self._hang.set()
        self.log: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ----------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake = hub

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Close the listening socket: every connection is refused until the block ends."""
        port = self.port
        self.stop()
        try:
            yield
        finally:
            self.start(port)

    # ------------------------------------------------------------------- content
    def _repo(self, repo_id: str) -> _Repo:
        if repo_id.count("/") != 1:
            raise ValueError(f"repo id must be 'owner/name', got {repo_id!r}")
        return self._repos.setdefault(repo_id, _Repo())

    def _commit_for_write(self, repo_id: str, revision: str | None) -> str:
        repo = self._repo(repo_id)
        revision = revision or "main"
        if _HEX40.match(revision):
            repo.commits.setdefault(revision, {})
            return revision
        sha = repo.refs.get(revision)
        if sha is None:
            repo.counter += 1
            sha = hashlib.sha1(f"{repo_id}@{revision}#{repo.counter}".encode()).hexdigest()
            repo.commits[sha] = {}
            repo.refs[revision] = sha
        return sha

    def add_file(self, repo_id: str, path: str, data: bytes, revision: str | None = None) -> str:
        """Put ``data`` at ``path`` in a commit and return that commit's sha.

        ``revision`` is a branch name (default ``main``; the branch's commit is
        extended in place) or a 40-hex commit sha (that commit is created or extended
        without moving any branch).
        """
        with self._lock:
            sha = self._commit_for_write(repo_id, revision)
            self._repos[repo_id].commits[sha][path.strip("/")] = bytes(data)
            return sha

    def add_folder(self, repo_id: str, local_dir: str | Path, revision: str | None = None) -> str:
        """Add every file under ``local_dir`` (paths relative to it) and return the commit sha."""
        local_dir = Path(local_dir)
        sha = self._commit_for_write(repo_id, revision)
        for file in sorted(local_dir.rglob("*")):
            if file.is_file():
                self.add_file(repo_id, file.relative_to(local_dir).as_posix(), file.read_bytes(), sha)
        return sha

    def new_commit(self, repo_id: str, files: dict[str, bytes] | None = None) -> str:
        """A fresh commit (unique sha, no branch moves) holding ``files``; returns its sha.

        The hub and the HF cache are shared by the whole test session, so a test that
        serves its own content under a real repo id should use its own commit and
        point imesh at it: ``monkeypatch.setenv(settings.revision_env_var(repo), sha)``.
        """
        with self._lock:
            repo = self._repo(repo_id)
            repo.counter += 1
            sha = hashlib.sha1(f"{repo_id}#commit{repo.counter}#{id(self)}".encode()).hexdigest()
            repo.commits[sha] = {}
        for path, data in (files or {}).items():
            self.add_file(repo_id, path, data, sha)
        return sha

    def set_ref(self, repo_id: str, name: str, sha: str) -> None:
        with self._lock:
            repo = self._repo(repo_id)
            if sha not in repo.commits:
                raise KeyError(f"{repo_id} has no commit {sha}")
            repo.refs[name] = sha

    def head(self, repo_id: str, revision: str = "main") -> str:
        """The commit sha that ``revision`` (a branch or a sha) resolves to."""
        resolved = self._resolve(repo_id, revision)
        if resolved is None:
            raise KeyError(f"{repo_id}@{revision}")
        return resolved

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self._repos[repo_id].commits[self.head(repo_id, revision)])

    def _resolve(self, repo_id: str, revision: str) -> str | None:
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return None
            if revision in repo.commits:
                return revision
            return repo.refs.get(revision)

    # -------------------------------------------------------------------- faults
    def cut_next(self, repo_id: str, path: str, after_bytes: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send the full headers but stop after ``after_bytes``."""
        with self._lock:
            self._cuts.setdefault((repo_id, path.strip("/")), []).extend([after_bytes] * times)

    def throttle(self, repo_id: str, path: str, bytes_per_second: int | None) -> None:
        """Serve ``path`` slowly (``None`` lifts it), e.g. to kill a download mid-file."""
        with self._lock:
            if bytes_per_second is None:
                self._throttle.pop((repo_id, path.strip("/")), None)
            else:
                self._throttle[(repo_id, path.strip("/"))] = bytes_per_second

    def reset_faults(self) -> None:
        """Forget pending cuts and throttles."""
        with self._lock:
            self._cuts.clear()
            self._throttle.clear()

    @contextlib.contextmanager
    def hanging(self) -> Iterator[None]:
        """Accept connections but answer nothing until the block ends (a stalled network)."""
        self._hang.clear()
        try:
            yield
        finally:
            self._hang.set()

    def _take_cut(self, repo_id: str, path: str) -> int | None:
        with self._lock:
            queue = self._cuts.get((repo_id, path))
            return queue.pop(0) if queue else None

    # ----------------------------------------------------------------------- log
    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def file_downloads(self, path_contains: str = "") -> list[Request]:
        """GET requests for file bodies (optionally only those whose path contains a string)."""
        with self._lock:
            return [r for r in self.log if r.is_file_body and path_contains in r.path]

    def _record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr
        pass

    # ------------------------------------------------------------------ helpers
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self._request.status = status
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.close_connection = True

    def _json(self, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                  "X-Error-Message": message, **(headers or {})})

    # ------------------------------------------------------------------ routing
    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        self._request = Request(self.command, path, self.headers.get("Range"))
        self.fake._record(self._request)
        parts = [p for p in url.path.split("/") if p]
        self.fake._hang.wait()
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api_models(parts[2:], parse_qs(url.query))
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve_file(f"{unquote(parts[0])}/{unquote(parts[1])}", unquote(parts[3]),
                                   "/".join(unquote(p) for p in parts[4:]))
            else:
                self._error(404, "NotFound", f"no route for {path}")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _lookup(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        hub = self.fake
        if repo_id not in hub._repos:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        sha = hub._resolve(repo_id, revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return sha, hub._repos[repo_id].commits[sha]

    def _resolve_file(self, repo_id: str, revision: str, filename: str) -> None:
        found = self._lookup(repo_id, revision)
        if found is None:
            return
        sha, files = found
        data = files.get(filename)
        if data is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist at {revision}",
                        {"X-Repo-Commit": sha})
            return
        etag = etag_for(filename, data)
        total = len(data)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if etag_for(filename, data) != git_blob_sha1(data):
            # LFS files: the Hub names the linked object's id and size explicitly.
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(total)
        start = 0
        status = 200
        range_header = self.headers.get("Range")
        if range_header and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if match is None:
                self._error(416, "RangeNotSatisfiable", f"bad range {range_header}")
                return
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else total - 1
            if start >= total:
                self._error(416, "RangeNotSatisfiable", f"range {range_header} past {total}",
                            {"Content-Range": f"bytes */{total}"})
                return
            data = data[start:end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{total}"
        if self.command == "HEAD":
            self._request.status = 200
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(total))
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        cut = self.fake._take_cut(repo_id, filename)
        self._request.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        rate = self.fake._throttle.get((repo_id, filename))
        if cut is not None:
            # Send part of the body, then drop the connection: the client sees a
            # response shorter than its Content-Length.
            self.wfile.write(data[:max(0, cut - start)])
            self.wfile.flush()
            self.connection.shutdown(2)
        elif rate:
            step = max(1, rate // 20)
            for i in range(0, len(data), step):
                self.wfile.write(data[i:i + step])
                self.wfile.flush()
                time.sleep(step / rate)
        else:
            self.wfile.write(data)
        self.close_connection = True

    def _api_models(self, parts: list[str], query: dict[str, list[str]]) -> None:
        repo_id = f"{unquote(parts[0])}/{unquote(parts[1])}"
        rest = parts[2:]
        if not rest or rest[0] == "revision":
            revision = unquote(rest[1]) if len(rest) >= 2 else "main"
            found = self._lookup(repo_id, revision)
            if found is None:
                return
            sha, files = found
            self._json({
                "id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "disabled": False,
                "gated": False, "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": name} for name in sorted(files)],
            })
        elif rest[0] == "tree" and len(rest) >= 2:
            revision = unquote(rest[1])
            prefix = "/".join(unquote(p) for p in rest[2:]).strip("/")
            found = self._lookup(repo_id, revision)
            if found is None:
                return
            _sha, files = found
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            self._json(_tree(files, prefix, recursive))
        else:
            self._error(404, "NotFound", f"no api route for {'/'.join(parts)}")


def _tree(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict[str, object]]:
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, dict[str, object]] = {}
    for name, data in sorted(files.items()):
        if not name.startswith(base):
            continue
        rel = name[len(base):]
        pieces = rel.split("/")
        # folders on the way down
        for depth in range(1, len(pieces)):
            if not recursive and depth > 1:
                break
            folder = base + "/".join(pieces[:depth])
            entries.setdefault(folder, {"type": "directory", "path": folder,
                                        "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0})
        if not recursive and len(pieces) > 1:
            continue
        entry: dict[str, object] = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
        if etag_for(name, data) != git_blob_sha1(data):
            entry["lfs"] = {"oid": etag_for(name, data), "size": len(data), "pointerSize": 134}
        entries[name] = entry
    return list(entries.values())


def resolve_url(endpoint: str, repo_id: str, revision: str, path: str) -> str:
    return f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"
