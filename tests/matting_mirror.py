"""A local stand-in for rembg's model release (or a site's mirror of it), for tests.

A real HTTP server on 127.0.0.1 (``http.server`` in a thread) serving files by their
release names under ``/rembg/``, with HTTP ``Range`` (206 + ``Content-Range``, 416
past the end) and two faults: :meth:`MattingMirror.cut_next` closes the connection
after N bytes of the next body(s), and :attr:`MattingMirror.ignore_range` answers
every request with the whole file (200), as some servers do. Every request is
logged. ``Connection: close`` on every response, as in tests/fakehub.py.

The ``matting_mirror`` fixture points ``IMESH_MATTING_URL`` at it, gives the test an
empty rembg home, and serves a small stand-in for the default model whose pin it
patches in (:meth:`MattingMirror.serve` does the same for any model).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from instantmesh_cli.images import matting_pins
from instantmesh_cli.images.matting_pins import MattingFile

_RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class Logged:
    method: str
    name: str  # release file name asked for
    range: str | None
    status: int = 0


class MattingMirror:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[Logged] = []
        self.ignore_range = False
        self._cuts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                mirror._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/rembg/"

    def start(self) -> "MattingMirror":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def cut_next(self, name: str, after_bytes: int, times: int = 1) -> None:
        """The next ``times`` bodies of ``name`` stop after ``after_bytes`` bytes (connection closed)."""
        with self._lock:
            self._cuts.setdefault(name, []).extend([after_bytes] * times)

    def gets(self, name: str | None = None) -> list[Logged]:
        return [r for r in self.log if r.method == "GET" and (name is None or r.name == name)]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        name = handler.path.removeprefix("/rembg/")
        asked = handler.headers.get("Range")
        entry = Logged("GET", name, asked)
        self.log.append(entry)
        data = self.files.get(name) if handler.path.startswith("/rembg/") else None
        if data is None:
            entry.status = 404
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.send_header("Connection", "close")
            handler.end_headers()
            return
        start = 0
        found = _RANGE.match(asked or "")
        if found and not self.ignore_range:
            start = int(found.group(1))
            if start >= len(data):
                entry.status = 416
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.send_header("Connection", "close")
                handler.end_headers()
                return
        entry.status = 206 if start else 200
        handler.send_response(entry.status)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.send_header("Accept-Ranges", "none" if self.ignore_range else "bytes")
        handler.send_header("Connection", "close")
        handler.end_headers()
        with self._lock:
            cuts = self._cuts.get(name)
            cut = cuts.pop(0) if cuts else None
        body = data[start:] if cut is None else data[start:start + cut]
        handler.wfile.write(body)
        handler.wfile.flush()
        handler.close_connection = True

    # ------------------------------------------------------------------ pins
    def serve(self, monkeypatch, model: str, data: bytes, *, md5: str | None = None,
              with_size: bool = True) -> MattingFile:
        """Serve ``data`` as ``model``'s file and pin it (the md5 of ``data`` unless given, and its size)."""
        real = matting_pins.PINNED[model]
        pin = MattingFile(model, real.release_name, md5 or hashlib.md5(data).hexdigest(),
                          len(data) if with_size else None)
        monkeypatch.setitem(matting_pins.PINNED, model, pin)
        self.files[real.release_name] = data
        return pin


def standin_onnx() -> bytes:
    """A small ONNX file that rembg's u2net sessions load and run (tests/matting_fixture.py)."""
    from matting_fixture import tiny_matting_onnx

    return tiny_matting_onnx()


@pytest.fixture
def matting_mirror(tmp_path, monkeypatch):
    """The mirror at ``IMESH_MATTING_URL``, an empty rembg home, and the default model served and pinned."""
    from instantmesh_cli.images import DEFAULT_MATTING_MODEL

    mirror = MattingMirror().start()
    home = tmp_path / "rembg-home"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv(matting_pins.MIRROR_ENV, mirror.base_url)
    mirror.home = Path(home)
    mirror.default = mirror.serve(monkeypatch, DEFAULT_MATTING_MODEL, standin_onnx())
    try:
        yield mirror
    finally:
        mirror.stop()
