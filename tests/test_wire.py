"""The standard-library HTTP client that ``imesh generate`` talks to a server with (serve/wire.py).

A real stdlib HTTP server on a unix socket and on TCP stands in for imesh serve here, so the
transport's own cases can be forced: a kept-alive connection the server closed, a stream left
half-read, a body the server parses as multipart. test_serve.py runs the client against the
real server.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from instantmesh_cli.serve.address import Address
from instantmesh_cli.serve.wire import TRANSPORT_ERRORS, Wire, multipart


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streams
    server_version = "wire-test"

    def log_message(self, *args) -> None:
        pass

    def address_string(self) -> str:  # a unix peer has no (host, port)
        return "test"

    def _send(self, status: int, body: bytes, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if close:
            self.close_connection = True

    def do_GET(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path == "/close":
            self._send(200, b'{"closed": true}', close=True)
        elif self.path.startswith("/lines/"):
            count = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for k in range(count):
                line = json.dumps({"k": k}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/missing":
            self._send(404, b'{"error": "no such job"}')
        else:
            self._send(200, json.dumps({"path": self.path}).encode())

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        parts = {}
        for part in message.iter_parts():
            parts[part.get_param("name", header="content-disposition")] = {
                "filename": part.get_filename(), "data": part.get_payload(decode=True).decode("latin-1")}
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        self._send(200, json.dumps(parts).encode())


class UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


@pytest.fixture(params=["unix", "tcp"])
def server(request, tmp_path: Path):
    if request.param == "unix":
        path = tmp_path / "s.sock"
        httpd = UnixHTTPServer(str(path), Handler)
        address = Address(path=path)
    else:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        address = Address(host="127.0.0.1", port=httpd.server_address[1])
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, address
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def test_requests_share_one_kept_alive_connection_and_carry_the_headers(server) -> None:
    httpd, address = server
    wire = Wire(address, {"Authorization": "Bearer t0k"})
    try:
        first = wire.request("GET", "/a")
        sock = wire._local.conn.sock
        second = wire.request("GET", "/b")
        assert (first.status, first.json(), second.json()) == (200, {"path": "/a"}, {"path": "/b"})
        assert wire._local.conn.sock is sock  # the same connection served both
        assert [s[2] for s in httpd.seen] == ["Bearer t0k", "Bearer t0k"]
    finally:
        wire.close()


def test_a_connection_the_server_closed_is_replaced_for_the_next_request(server) -> None:
    httpd, address = server
    wire = Wire(address)
    try:
        assert wire.request("GET", "/close").json() == {"closed": True}
        assert wire.request("GET", "/after").json() == {"path": "/after"}
        assert [s[1] for s in httpd.seen] == ["/close", "/after"]  # each sent once
    finally:
        wire.close()


def test_multipart_upload_is_parsed_by_a_standard_parser(server) -> None:
    httpd, address = server
    data = bytes(range(256)) * 3  # every byte value, CR LF and dashes among them
    body, content_type = multipart({"seed": "7", "name": "my photo.png"}, "image", 'odd"name.png', data)
    wire = Wire(address)
    try:
        parts = wire.request("POST", "/v1/jobs", body=body, content_type=content_type).json()
    finally:
        wire.close()
    assert parts["seed"]["data"] == "7" and parts["name"]["data"] == "my photo.png"
    assert parts["image"]["data"].encode("latin-1") == data
    assert parts["image"]["filename"] == "odd%22name.png"  # quoted as browsers do, never breaking the header


def test_a_stream_read_to_its_end_keeps_the_connection_and_one_left_early_drops_it(server) -> None:
    httpd, address = server
    wire = Wire(address)
    try:
        error, lines = wire.stream_lines("/lines/5", timeout=10)
        assert error is None
        assert [json.loads(line)["k"] for line in lines] == [0, 1, 2, 3, 4]
        sock = wire._local.conn.sock
        assert wire.request("GET", "/x").json() == {"path": "/x"}
        assert wire._local.conn.sock is sock

        error, lines = wire.stream_lines("/lines/50", timeout=10)
        assert json.loads(next(lines)) == {"k": 0}
        lines.close()  # the client stops listening mid-stream
        assert wire._local.conn is None  # its unread rest must not be taken for the next answer
        assert wire.request("GET", "/y").json() == {"path": "/y"}
    finally:
        wire.close()


def test_an_error_answer_to_a_stream_comes_back_whole(server) -> None:
    _, address = server
    wire = Wire(address)
    try:
        error, lines = wire.stream_lines("/missing", timeout=10)
        assert (error.status, error.json(), list(lines)) == (404, {"error": "no such job"}, [])
    finally:
        wire.close()


def test_no_server_is_a_transport_error(tmp_path: Path) -> None:
    for address in (Address(path=tmp_path / "none.sock"), Address(host="127.0.0.1", port=_closed_port())):
        wire = Wire(address)
        with pytest.raises(TRANSPORT_ERRORS):
            wire.request("GET", "/v1/health")
        wire.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
