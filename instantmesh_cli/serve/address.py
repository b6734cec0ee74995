"""Where a server listens and how a client names it.

The default is a unix socket only its owner can reach: ``$XDG_RUNTIME_DIR/imesh/serve.sock``
(systemd's per-user runtime folder, 0700), else ``<tempdir>/imesh-<uid>/serve.sock`` in a
folder this module creates 0700 and refuses to use when someone else owns it or can enter it
(another user could otherwise plant a socket there and receive our photos). TCP is opt-in.

Addresses as clients write them: ``unix:/path/to.sock``, a plain socket path, or
``http://host:port``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from instantmesh_cli.errors import ImeshError, UsageError

SOCKET_NAME = "serve.sock"
DEFAULT_PORT = 8411  # --host without --port
SERVER_ENV = "IMESH_SERVER"
TOKEN_ENV = "IMESH_TOKEN"


@dataclass(frozen=True)
class Address:
    """A unix socket (``path``) or a TCP ``host``:``port``."""

    path: Path | None = None
    host: str | None = None
    port: int | None = None

    @property
    def url(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def runtime_folder(*, create: bool) -> Path:
    """The per-user folder of the default socket; created 0700 when ``create``; checked private either way."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(xdg) / "imesh" if xdg else Path(tempfile.gettempdir()) / f"imesh-{os.getuid()}"
    if create:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ImeshError(f"cannot create {folder}: {exc.strerror or exc}") from None
    if folder.exists():
        _check_private(folder)
    return folder


def _check_private(folder: Path) -> None:
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ImeshError(f"{folder} is not a folder; remove it or use --socket PATH")
    if info.st_uid != os.getuid():
        raise ImeshError(f"{folder} belongs to another user; remove it or use --socket PATH")
    if info.st_mode & 0o077:
        raise ImeshError(f"{folder} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                         f"run chmod 700 {folder}, or use --socket PATH")


def default_socket(*, create: bool = False) -> Path:
    return runtime_folder(create=create) / SOCKET_NAME


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is on this machine's loopback (a name is resolved)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def parse_server(text: str) -> Address:
    """``unix:/path``, a socket path, or ``http://host:port`` → :class:`Address`; one usage error otherwise."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]  # unix:///run/x.sock
        if not path:
            raise UsageError(f"--server {text!r}: give the socket path, e.g. unix:/run/user/1000/imesh/serve.sock")
        return Address(path=Path(path).expanduser())
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme == "https":
            raise UsageError(f"--server {text}: imesh serve speaks plain HTTP; put a TLS proxy in front and use its http:// address here")
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(f"--server {text!r}: use unix:/path/to.sock or http://host:port")
        try:
            port = parts.port or 80
        except ValueError:
            raise UsageError(f"--server {text!r}: the port is not a number") from None
        return Address(host=parts.hostname, port=port)
    return Address(path=Path(text).expanduser())


# --------------------------------------------------------------------------- the server's side


def prepare_unix(path: Path) -> None:
    """Make ``path`` ready to bind, before any model loads: its folder (0700 when created here), and no
    other server there. A socket file left by a server that died is removed; a live server is an error."""
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ImeshError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    if not (path.exists() or path.is_symlink()):
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise ImeshError(f"{path} exists and is not a socket; choose another --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody answers: left over from a server that was killed
    else:
        raise ImeshError(f"a server is already listening on {path}; stop it first, or choose another --socket")
    finally:
        probe.close()


def bind_unix(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600 from the start (no window where others could connect)."""
    path = Path(path)
    prepare_unix(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # bind creates the file; the umask decides its mode before chmod could
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        hint = " (the path is too long for a unix socket)" if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL) else ""
        raise ImeshError(f"cannot listen on {path}: {exc.strerror or exc}{hint}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ImeshError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock
