"""The client ``imesh generate`` uses when a server is running: find it, send jobs, write what comes back.

:func:`connect` decides the engine: ``--no-server`` → here; ``--server URL`` / ``IMESH_SERVER``
→ that server (an error when it cannot be reached or cannot serve these options); else the
default socket when a server answers there and loaded the models these options need, here
otherwise. :class:`RemoteBatch` runs a batch through it with the same contract as the
local runner: ``on_done(job)`` once per job in input order, the files written atomically
by this process from the downloaded bytes (the same names and bytes a local run writes),
and Ctrl-C cancels this client's jobs on the server.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from instantmesh_cli.errors import ImeshError, UsageError
from instantmesh_cli.serve.address import TOKEN_ENV, Address, default_socket, parse_server
from instantmesh_cli.serve.wire import TRANSPORT_ERRORS, Response, Wire, multipart

if TYPE_CHECKING:
    from instantmesh_cli.chain.job import Job
    from instantmesh_cli.chain.options import PipelineOptions

ProgressFn = Callable[[str, int, "int | None"], None]
_EVENT_TIMEOUT_S = 120.0  # the server writes a heartbeat every few seconds


class Refused(ImeshError):
    """The server answered with an error: its one line and status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class ServerClient:
    """The API over one unix socket or TCP address."""

    def __init__(self, address: Address, token: str | None = None):
        self.address = address
        # No proxy is ever consulted: one from the environment must not carry photos meant for a local server.
        self.wire = Wire(address, {"Authorization": f"Bearer {token}"} if token else {})

    def close(self) -> None:
        self.wire.close()

    @staticmethod
    def _check(response: Response) -> Response:
        if response.status >= 400:
            try:
                message = response.json().get("error") or response.text
            except (ValueError, AttributeError):
                message = response.text.strip() or response.reason
            raise Refused(str(message), response.status)
        return response

    def health(self) -> dict:
        """The server's health body (also when it answers 503: draining, no worker ready)."""
        response = self.wire.request("GET", "/v1/health")
        if response.status == 503:
            return response.json()
        return self._check(response).json()

    def submit(self, data: bytes, *, name: str, stem: str, fields: Mapping[str, str]) -> dict:
        body, content_type = multipart({**fields, "name": name, "stem": stem}, "image", name, data)
        return self._check(self.wire.request("POST", "/v1/jobs", body=body, content_type=content_type)).json()

    def status(self, job_id: str) -> dict:
        return self._check(self.wire.request("GET", f"/v1/jobs/{job_id}")).json()

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's status each time it changes, the last one finished."""
        error, lines = self.wire.stream_lines(f"/v1/jobs/{job_id}/events", timeout=_EVENT_TIMEOUT_S)
        if error is not None:
            self._check(error)
        for line in lines:
            if line.strip():
                yield json.loads(line)

    def download(self, job_id: str, name: str) -> bytes:
        return self._check(self.wire.request("GET", f"/v1/jobs/{job_id}/files/{name}")).body

    def delete(self, job_id: str) -> None:
        try:
            self.wire.request("DELETE", f"/v1/jobs/{job_id}", timeout=10.0)
        except TRANSPORT_ERRORS:
            pass  # the server forgets it after its TTL anyway


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("] ", 1)[-1]  # "[Errno 111] Connection refused" → "Connection refused"


def mismatch(health: dict, options: "PipelineOptions") -> str | None:
    """Why the server cannot run jobs with ``options`` the way this process would (None: it can)."""
    from instantmesh_cli.serve.fields import FieldError, effective_dtype

    if health.get("status") != "ok":
        return f"it is {health.get('status', 'not ready')}"
    if health["model"] != options.model:
        return f"its workers loaded {health['model']}, not {options.model}"
    if options.device != "auto" and options.device.split(":")[0] != health["device"]:
        return f"its workers run on {health['device']}, not {options.device}"
    if options.dtype != "auto":
        try:
            wanted = effective_dtype(options.dtype, health["device"])
        except FieldError as exc:
            return str(exc)
        if wanted != health["dtype"]:
            return f"its workers compute in {health['dtype']}, not {options.dtype}"
    if options.weights_dir is not None:
        theirs = health.get("weights_dir")
        if theirs is None or Path(theirs).resolve() != Path(options.weights_dir).resolve():
            return f"it reads its weights from {theirs or 'the cache'}, not {options.weights_dir}"
    return None


def connect(server: str | None, options: "PipelineOptions", *, note: Callable[[str], None]) -> "RemoteBatch | None":
    """The server to run on, or None to run here (see the module docstring for the rule)."""
    token = os.environ.get(TOKEN_ENV) or None
    explicit = server is not None and server.strip() != ""
    if explicit:
        address = parse_server(server)
    else:
        try:
            address = Address(path=default_socket(create=False))
        except ImeshError:
            return None  # an unsafe default folder is never used; `imesh serve` says why when started
        if not address.path.is_socket():
            return None
    client = ServerClient(address, token)
    try:
        health = client.health()
    except Refused as exc:
        client.close()
        if explicit:
            raise ImeshError(f"imesh server at {address.url}: {exc}") from None
        note(f"the server at {address.url} refused: {exc}; running here")
        return None
    except (*TRANSPORT_ERRORS, ValueError) as exc:
        client.close()
        if explicit:
            raise ImeshError(f"cannot reach the imesh server at {address.url}: {_reason(exc)} "
                             "(start it with imesh serve, or use --no-server)") from None
        return None  # a socket left by a server that is gone
    why = mismatch(health, options)
    if why is not None:
        client.close()
        if explicit:
            raise UsageError(f"the imesh server at {address.url} cannot run this: {why} (or use --no-server)")
        note(f"a server is running at {address.url} but {why}; running here")
        return None
    return RemoteBatch(client, health)


class RemoteBatch:
    """A batch through a server: a few jobs in flight, results written here, in input order."""

    engine = "server"

    def __init__(self, client: ServerClient, health: dict, fields: Mapping[str, str] | None = None):
        self.client = client
        self.health = health
        self.fields = dict(fields or {})
        total = int(health.get("workers", {}).get("total") or 1)
        self.in_flight = max(2, min(16, 2 * total + 1))  # enough to keep every worker and its overlap busy
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[str] = set()  # job ids on the server that this client has not finished with

    def close(self) -> None:
        self.client.close()

    def run(self, jobs: "list[Job]", on_done: Callable[["Job"], None]) -> None:
        from instantmesh_cli.chain.run import report_in_order

        pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="imesh-client")
        futures = [pool.submit(self._one, job) for job in jobs]

        def stop() -> None:
            for future in futures:
                future.cancel()
            with self._lock:
                self._stop.set()
                open_ids = list(self._open)
            for job_id in open_ids:
                self.client.delete(job_id)  # queued ones never run; running ones end their streams as cancelled
            pool.shutdown(wait=True, cancel_futures=True)

        report_in_order(futures, on_done, on_stop=stop)
        pool.shutdown(wait=True)

    # ------------------------------------------------------------------ one job
    def _one(self, job: "Job") -> "Job":
        if job.status == "skipped" or self._stop.is_set():
            return job
        source = job.inputs[0]
        sent_name = Path(job.name).name if source.path is not None else job.name
        target = job.outputs.mesh
        stem = target.stem if target is not None else "stdin"
        try:
            data = source.data if source.data is not None else source.path.read_bytes()
        except OSError:
            return self._fail_like_local(job)
        fields = {**self.fields, "format": job.outputs.mesh_format}
        try:
            status = self.client.submit(data, name=sent_name, stem=stem, fields=fields)
        except Refused as exc:
            return self._failed(job, str(exc), sent_name)
        except TRANSPORT_ERRORS as exc:
            return self._failed(job, f"the server stopped answering: {_reason(exc)}", sent_name)
        job_id = status["id"]
        with self._lock:
            stopped = self._stop.is_set()
            if not stopped:
                self._open.add(job_id)
        if stopped:
            self.client.delete(job_id)  # submitted while the batch was being stopped
            return job
        try:
            for status in self.client.events(job_id):
                if status["state"] == "running" and status["stage"] is not None:
                    job.report(status["stage"], status["step"] or 0, status["total"])
                if self._stop.is_set() and status["state"] not in ("done", "failed", "cancelled"):
                    break
            if self._stop.is_set():
                return job
            if status["state"] not in ("done", "failed", "cancelled"):
                return self._failed(job, "the server ended the job's event stream before the job finished", sent_name)
            if status["state"] == "done":
                self._write(job, job_id, status)
            self._settle(job, status, sent_name)
        except Refused as exc:
            return self._failed(job, str(exc), sent_name)
        except TRANSPORT_ERRORS as exc:
            return self._failed(job, f"lost the server mid-job: {_reason(exc)}", sent_name)
        finally:
            with self._lock:
                self._open.discard(job_id)
            self.client.delete(job_id)
        return job

    def _write(self, job: "Job", job_id: str, status: dict) -> None:
        """Download the job's files and write the ones asked for, atomically, where a local run would."""
        from instantmesh_cli.fileio import write_bytes_atomic

        out = job.outputs
        for entry in status["files"]:
            kind, name = entry["kind"], entry["name"]
            if kind == "mesh":
                if out.mesh_to is not None:
                    out.mesh_to(self.client.download(job_id, name))
                    continue
                path = out.mesh
            elif kind in ("mesh-part", "preview"):
                path = out.mesh.with_name(name) if out.mesh is not None else None
            elif kind == "views":
                path = out.views
            elif kind == "cutout":
                path = out.cutout
            else:
                path = None
            if path is None:
                continue
            data = self.client.download(job_id, name)
            try:
                job.files.append(write_bytes_atomic(path, data))
            except OSError as exc:
                raise ImeshError(f"cannot write {path}: {exc.strerror or exc}") from None

    def _settle(self, job: "Job", status: dict, sent_name: str) -> None:
        record = status.get("result") or {}
        if status["state"] == "cancelled":
            job.status, job.error = "failed", "cancelled on the server"
            return
        job.status = record.get("status", "ok") if status["state"] == "done" else "failed"
        job.error = self._local_words(status.get("error") or record.get("error"), job, sent_name)
        job.warnings.extend(record.get("warnings") or [])
        job.timings.update(record.get("seconds") or {})
        job.vertices, job.faces = record.get("vertices"), record.get("faces")
        job.psnr_before, job.psnr_after = record.get("psnr_before"), record.get("psnr_after")
        job.quality = record.get("quality")

    @staticmethod
    def _local_words(error: str | None, job: "Job", sent_name: str) -> str | None:
        """The server names the input by its file name; a local run names it as the user did."""
        if error is None:
            return None
        label = job.inputs[0].label
        return error.replace(sent_name, label, 1) if sent_name != label and sent_name in error else error

    def _failed(self, job: "Job", error: str, sent_name: str) -> "Job":
        job.status, job.error = "failed", self._local_words(error, job, sent_name)
        return job

    @staticmethod
    def _fail_like_local(job: "Job") -> "Job":
        """An input this process cannot read fails with the words a local run uses (the read stage's own)."""
        from instantmesh_cli.chain import stages

        try:
            stages.read(None, job)
        except ImeshError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - the same one-line rule as any stage
            job.status, job.error = "failed", stages.describe(exc)
        else:
            job.status, job.error = "failed", f"{job.name}: unreadable"
        return job
