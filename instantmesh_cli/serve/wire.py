"""HTTP/1.1 to an imesh server over a unix socket or TCP, on the standard library alone.

Why not httpx2 (which the rest of imesh uses, and the tests use against the server): every
``imesh generate`` through a warm server is a new process, and importing httpx2 with httpcore2
took 0.2 s of it on the 2-core dev VM (``python -X importtime``), as much as the whole
budget for a call through a server over a warm run. This client needs little of it: plain
HTTP (the server never speaks TLS), keep-alive, one multipart upload and newline-delimited
JSON streams, which :mod:`http.client` does in a few lines.

One :class:`Wire` is shared by a batch's threads; each thread keeps its own connection
(``http.client`` connections are not thread-safe) and opens a new one when the server
closed the old.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import uuid
from typing import Iterator, Mapping

from instantmesh_cli.serve.address import Address

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0

# What a broken transport raises: refused or reset connections, timeouts (OSError), and a
# server that answered something other than HTTP or hung up mid-answer (HTTPException).
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("imesh", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Response:
    """A finished answer: status, reason, body."""

    def __init__(self, status: int, reason: str, body: bytes):
        self.status, self.reason, self.body = status, reason, body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def multipart(fields: Mapping[str, str], file_field: str, file_name: str, data: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with text ``fields`` and one file; (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(key)}"\r\n\r\n'
                     .encode() + str(value).encode() + b"\r\n")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(file_field)}"; '
                 f'filename="{_quote(file_name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                 + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _quote(text: str) -> str:
    # RFC 7578 §4.2 as browsers do it: percent-escape the quote and line breaks, keep the rest as UTF-8.
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class Wire:
    """Requests to one server address, with ``headers`` on each (the token)."""

    def __init__(self, address: Address, headers: Mapping[str, str] | None = None):
        self.address = address
        self.headers = dict(headers or {})
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.address.path is not None:
                conn = _UnixConnection(str(self.address.path), CONNECT_TIMEOUT_S)
            else:
                conn = http.client.HTTPConnection(self.address.host, self.address.port, timeout=CONNECT_TIMEOUT_S)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _send(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str],
              read_timeout: float) -> http.client.HTTPResponse:
        # A kept-alive connection the server has since closed fails on first use; that one
        # request is sent again on a new connection. Only requests before any answer came back
        # are retried, so a job is never submitted twice.
        for attempt in (1, 2):
            conn = self._connection()
            fresh = conn.sock is None
            try:
                if fresh:
                    conn.connect()
                conn.sock.settimeout(read_timeout)
                conn.request(method, path, body=body, headers={**self.headers, **headers})
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if fresh or attempt == 2:
                    raise
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")

    def _whole(self, response: http.client.HTTPResponse) -> Response:
        """The answer read to its end; the connection kept for the next request unless the server closes it."""
        try:
            data = response.read()
        except BaseException:
            self._drop()
            raise
        if response.will_close:
            self._drop()
        return Response(response.status, response.reason, data)

    def request(self, method: str, path: str, *, body: bytes | None = None, content_type: str | None = None,
                timeout: float = READ_TIMEOUT_S) -> Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return self._whole(self._send(method, path, body, headers, timeout))

    def stream_lines(self, path: str, *, timeout: float) -> "tuple[Response | None, Iterator[bytes]]":
        """GET ``path`` as a stream: (the answer when it is an error, else None; its lines)."""
        response = self._send("GET", path, None, {}, timeout)
        if response.status >= 400:
            return self._whole(response), iter(())

        def lines() -> Iterator[bytes]:
            finished = False
            try:
                while True:
                    line = response.readline()
                    if not line:
                        finished = True
                        return
                    yield line
            finally:
                if not finished or response.will_close:
                    self._drop()  # left mid-stream: the rest would arrive on the next request's connection

        return None, lines()

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for conn in connections:
            conn.close()
