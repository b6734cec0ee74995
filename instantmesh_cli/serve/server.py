"""Run a server: workers first (warm before anyone can connect), then the sockets, then uvicorn; drain on SIGTERM.

SIGTERM or Ctrl-C: the server drains — new jobs get 503, queued and running ones finish,
clients fetch what finished (for up to ``FETCH_GRACE`` seconds) — and it exits 0. A second
signal stops at once (exit 130 / 143). Nothing is left behind: the results folder and the
socket file are removed at exit.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import uvicorn

from instantmesh_cli.errors import UsageError
from instantmesh_cli.serve.address import (
    DEFAULT_PORT, Address, bind_tcp, bind_unix, default_socket, is_loopback, prepare_unix,
)

if TYPE_CHECKING:
    from instantmesh_cli.chain.options import PipelineOptions

FETCH_GRACE = 10.0  # after the last job of a drain finishes, how long clients may still fetch results
DEFAULT_TTL = 3600.0


@dataclass(frozen=True)
class Listen:
    """Where to listen: the unix socket (``path``; None with ``tcp`` only), and/or TCP."""

    path: Path | None
    host: str | None = None
    port: int | None = None

    def check(self, token: str | None) -> "Listen":
        """Refuse TCP beyond this machine without a token, before any model loads."""
        if self.host is not None and not is_loopback(self.host) and not token:
            raise UsageError(f"--host {self.host} is reachable from other machines; give --token (or IMESH_TOKEN), "
                             "or listen on 127.0.0.1 / the unix socket")
        if token is not None and len(token) < 16:
            raise UsageError("--token must be at least 16 characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
        return self


def listen_from(socket_path: Path | None, host: str | None, port: int | None) -> Listen:
    """The command line's choice: the default socket unless TCP is asked for; both when both are."""
    tcp = host is not None or port is not None
    if tcp and port is None:
        port = DEFAULT_PORT
    path = socket_path if socket_path is not None else (None if tcp else default_socket(create=True))
    return Listen(path=path, host=(host or "127.0.0.1") if tcp else None, port=port)


def run_server(
    options: "PipelineOptions",
    devices: Sequence[str],
    listen: Listen,
    *,
    token: str | None = None,
    ttl: float = DEFAULT_TTL,
    max_upload: int | None = None,
    start_method: str = "spawn",
    ready: Callable[[list[Address]], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> int:
    """Serve until a signal; the exit code (0 after a drain)."""
    from instantmesh_cli.chain.workers import WorkerPool
    from instantmesh_cli.serve.app import DEFAULT_MAX_UPLOAD, Service, build_app, stderr_logging
    from instantmesh_cli.serve.jobs import JobTable

    say = say or (lambda line: None)
    listen.check(token)
    if listen.path is not None:
        prepare_unix(listen.path)  # a wrong --socket fails now, not after the models have loaded
    pool = WorkerPool(options, list(devices), start_method=start_method)
    root = Path(tempfile.mkdtemp(prefix="imesh-serve-"))
    sockets = []
    table = None
    try:
        started = time.perf_counter()
        say(f"loading models in {len(devices)} worker(s) on {', '.join(devices)}")
        pool.start()
        say(f"workers ready in {time.perf_counter() - started:.1f} s")
        addresses = []
        if listen.path is not None:
            sockets.append(bind_unix(listen.path))
            addresses.append(Address(path=listen.path))
        if listen.host is not None:
            sock = bind_tcp(listen.host, listen.port)
            sockets.append(sock)
            addresses.append(Address(host=listen.host, port=sock.getsockname()[1]))
        table = JobTable(pool, options, root, ttl=ttl, log=say)
        service = Service(options=options, device_type=devices[0].split(":")[0], devices=list(devices), token=token,
                          max_upload=max_upload or DEFAULT_MAX_UPLOAD)
        app = build_app(service, table, janitor_seconds=max(0.2, min(30.0, ttl / 4)))
        config = uvicorn.Config(app, log_config=stderr_logging(), access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5, timeout_keep_alive=5)
        server = _DrainingServer(config, service, table, say)
        if ready is not None:
            ready(addresses)
        server.run(sockets=sockets)
        return server.exit_code
    finally:
        for sock in sockets:
            sock.close()
        if listen.path is not None and sockets:
            try:
                os.unlink(listen.path)
            except OSError:
                pass
        pool.close(drain=False)
        if table is not None:
            table.close()
        else:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


class _DrainingServer(uvicorn.Server):
    """uvicorn's server with our signal rule: the first signal drains, a second one stops now."""

    def __init__(self, config, service, table, say):
        super().__init__(config)
        self.service, self.table, self.say = service, table, say
        self.exit_code = 0
        self._idle_since: float | None = None

    def handle_exit(self, sig: int, frame) -> None:
        # Not uvicorn's: it stops listening at once (new clients would see a refused connection,
        # not a 503) and re-raises the signal at exit (exit 143 instead of 0 after a clean drain).
        if self.service.draining:
            self.exit_code = 128 + sig
            self.should_exit = self.force_exit = True
            return
        self.service.draining = True
        name = signal.Signals(sig).name
        self.say(f"{name}: draining ({self.table.active} job(s) to finish; new jobs get 503); send it again to stop now")

    async def on_tick(self, counter: int) -> bool:
        if self.service.draining and not self.should_exit:
            now = time.monotonic()
            if self.table.active:
                self._idle_since = None
            else:
                self._idle_since = self._idle_since or now
                if not self.table.unfetched() or now - self._idle_since > FETCH_GRACE:
                    self.say("drained; stopping")
                    self.should_exit = True
        return await super().on_tick(counter)


def print_addresses(addresses: list[Address]) -> None:
    """The data ``imesh serve`` prints: one address per line on stdout, once it takes requests."""
    for address in addresses:
        sys.stdout.write(address.url + "\n")
    sys.stdout.flush()
