"""The web page: one more client of the API, served from the package's ``web/`` folder.

The page and its files hold no secret, so they are served without the token; everything the
page shows comes from ``/v1`` calls that carry it (``Authorization: Bearer``, read once from
``/?token=`` or a login form and kept in the tab's sessionStorage, never put in a resource URL).
Files are looked up in a table built at start-up from the package, so no request path ever
reaches the disk. The Content-Security-Policy says the page loads nothing from anywhere but
this server: the 3D viewer's three.js is in ``web/vendor/``, and meshes and pictures arrive
as ``blob:`` URLs made from authorised fetches.

A server without a token answers only requests whose Host is a loopback name: a web site open
in the user's browser could otherwise re-point its own name at 127.0.0.1 (DNS rebinding) and
drive the API from there.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from instantmesh_cli.serve.app import Service

_MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".md": "text/markdown; charset=utf-8", ".json": "application/json"}
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)
_GZIP_OVER = 1024  # smaller files go as they are: the header costs more than it saves
_BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # The page may be opened as /?token=...: no Referer may carry that address, not even to this server.
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = {"X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin",
                 "Permissions-Policy": "camera=(), microphone=(), geolocation=()"}


@dataclass
class Asset:
    data: bytes
    media_type: str
    etag: str = field(init=False)
    _gz: bytes | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.etag = '"' + hashlib.sha256(self.data).hexdigest()[:32] + '"'

    @property
    def gz(self) -> bytes:
        if self._gz is None:
            self._gz = gzip.compress(self.data, compresslevel=6, mtime=0)
        return self._gz


def load_assets() -> dict[str, Asset]:
    """Every file of ``web/`` by its URL path below ``/web/`` (``vendor/three/build/three.module.js``)."""
    root = resources.files("instantmesh_cli.serve") / "web"
    out: dict[str, Asset] = {}

    def walk(folder, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, name + "/")
            else:
                suffix = "." + entry.name.rsplit(".", 1)[1] if "." in entry.name else ""
                out[name] = Asset(entry.read_bytes(), _MEDIA.get(suffix, "text/plain; charset=utf-8"))

    walk(root, "")
    return out


def content_security_policy(index_html: bytes) -> str:
    """The page's policy: its own files only, the inline import map by its hash, pictures and meshes as blob: URLs."""
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
              for m in _IMPORT_MAP.findall(index_html.decode())]
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' " + " ".join(hashes),
        "style-src 'self'",
        # GLTFLoader decodes a GLB's embedded texture through a blob: URL (fetch, then createImageBitmap).
        "img-src 'self' blob: data:",
        "connect-src 'self' blob: data:",
        "worker-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _loopback_host(host_header: str) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: security headers on every answer; without a token, loopback Host names only (over TCP)."""

    def __init__(self, app, service: "Service"):
        self.app = app
        self.service = service
        self.base = [(k.lower().encode(), v.encode()) for k, v in _BASE_HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        server = scope.get("server")
        over_tcp = isinstance(server, (tuple, list)) and len(server) == 2 and server[1] is not None
        if over_tcp and self.service.token is None:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if not _loopback_host(host):
                body = json.dumps({"error": f"Host {host!r} refused: a server without --token answers only to "
                                            "localhost, 127.0.0.1 and [::1]; give it a token to serve other names"})
                response = Response(body, status_code=421, media_type="application/json")
                return await response(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.base]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_page(app: "FastAPI", service: "Service") -> None:
    """``/`` (the page) and ``/web/{file}`` (its scripts, styles, the viewer's three.js)."""
    from instantmesh_cli.serve.jobs import JobError

    assets = load_assets()
    index = assets["index.html"]
    page_headers = {**_PAGE_HEADERS, "Content-Security-Policy": content_security_policy(index.data)}

    def answer(request: Request, asset: Asset) -> Response:
        headers = {**page_headers, "ETag": asset.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        data = asset.data
        if len(data) > _GZIP_OVER and "gzip" in request.headers.get("accept-encoding", ""):
            data, headers["Content-Encoding"] = asset.gz, "gzip"
        return Response(data, media_type=asset.media_type, headers=headers)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page(request: Request):
        return answer(request, index)

    @app.api_route("/web/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def web_file(request: Request, name: str):
        asset = assets.get(name)
        if asset is None:
            raise JobError(f"no page file {name!r}", 404)
        return answer(request, asset)

    app.add_middleware(Guard, service=service)
