"""The HTTP API (FastAPI): submit a photo, follow its progress, fetch its files, cancel.

Every error is a 4xx/5xx answer with one line, ``{"error": "..."}``; nothing a request does
stops the server. Bodies are read with a bound (``max_upload``) before anything parses
them, and an image is decoded (with the ``IMESH_MAX_PIXELS`` limit) before it is queued,
so a broken upload is refused at once instead of failing later on a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.exceptions import HTTPException as StarletteHTTPException

from instantmesh_cli import __version__
from instantmesh_cli.images.loading import pixel_limit
from instantmesh_cli.serve.fields import KEEP_FIELDS, SERVER_OWNED, FieldError, effective_dtype, fields, job_options
from instantmesh_cli.serve.jobs import FINISHED, MEDIA_TYPES, JobError, check_stem, clean_name, default_stem

if TYPE_CHECKING:
    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.serve.jobs import JobTable, ServerJob

log = logging.getLogger("imesh.serve")

DEFAULT_MAX_UPLOAD = 32 * 2**20
HEARTBEAT_SECONDS = 5.0  # an empty line on an event stream this often: a vanished client is noticed on the next write
_DISCARD_FACTOR = 4  # an oversize body is read (and dropped) up to this many times the limit, so the client gets the 413


@dataclass
class Service:
    """What the routes know about the running server."""

    options: "PipelineOptions"  # the workers' load options
    device_type: str  # "cpu" or "cuda"
    devices: list[str]
    token: str | None = None
    max_upload: int = DEFAULT_MAX_UPLOAD
    draining: bool = False


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def _field_docs() -> dict:
    props = {"image": {"type": "string", "format": "binary", "description": "the photo (PNG, JPEG, WebP, ...)"},
             "name": {"type": "string", "description": "the image's name: labels the job and, with seed, decides its seed "
                                                       "(as imesh generate does with the file name); default: the file name"},
             "stem": {"type": "string", "description": "base name of the result files (default: the name's stem)"}}
    for f in fields().values():
        if f.name in SERVER_OWNED:
            continue
        props[f.name] = {"type": "string", "description": f"as imesh generate --{f.name}; default: {f.default}"}
    for name, default in KEEP_FIELDS.items():
        props[name] = {"type": "string", "description": f"keep this file for fetching (as imesh generate --{name} "
                                                        f"writes it); default here: {str(default).lower()}"}
    return props


def build_app(service: Service, table: "JobTable", *, janitor_seconds: float = 30.0) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        table.bind(asyncio.get_running_loop())

        async def janitor():
            while True:
                await asyncio.sleep(janitor_seconds)
                await run_in_threadpool(table.expire)

        task = asyncio.create_task(janitor())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(
        title="imesh serve",
        version=__version__,
        description=(
            "Photos to textured meshes on warm workers (one per GPU). Submit a photo with `POST /v1/jobs` "
            "(multipart field `image`, or the raw image as the body), with the options of `imesh generate` "
            "by the same names and defaults as form fields or query parameters (`steps=30`, `texture-size=512`, "
            "`format=obj`, `no-rembg=true`). Follow it with `GET /v1/jobs/{id}` or the NDJSON stream "
            "`GET /v1/jobs/{id}/events`, fetch its files, and `DELETE` it. Results are kept for the server's "
            "TTL. Send `Authorization: Bearer TOKEN` when the server has a token. Errors are `{\"error\": \"one line\"}`. "
            "The web page at `/` is a client of this API."
        ),
        lifespan=lifespan,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "request refused", exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request"))

    @app.exception_handler(JobError)
    async def job_error(request: Request, exc: JobError):
        return _error(exc.status, str(exc), {"Retry-After": "5"} if exc.status == 503 else None)

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError):
        return _error(exc.status, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("request %s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    async def authorized(request: Request) -> None:
        if service.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), service.token.encode()):
            raise StarletteHTTPException(401, "missing or wrong token: send Authorization: Bearer TOKEN",
                                         headers={"WWW-Authenticate": "Bearer"})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    def links(job: "ServerJob") -> dict:
        return table.status(job, base="/v1/jobs")

    @v1.get("/health", summary="Whether the server takes jobs, and which models its workers loaded")
    async def health():
        stats = table.pool.stats()
        ready = sum(w["ready"] and w["alive"] for w in stats["workers"])
        status = "draining" if service.draining else ("ok" if ready else "no worker ready")
        dtype = effective_dtype(service.options.dtype, service.device_type)
        body = {
            "status": status, "version": __version__, "model": service.options.model, "dtype": dtype,
            "device": service.device_type, "devices": service.devices,
            "workers": {"ready": ready, "total": len(stats["workers"])},
            "weights_dir": None if service.options.weights_dir is None else str(service.options.weights_dir),
            "queue_depth": sum(j.state == "queued" for j in table.jobs()),
            "limits": {"max_upload_bytes": service.max_upload, "max_pixels": pixel_limit(), "ttl_seconds": table.ttl},
        }
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    @v1.get("/fields", summary="The job options (imesh generate's flags): type, default, choices, help; for forms")
    async def field_list():
        from instantmesh_cli.serve.fields import describe

        return {"fields": describe()}

    @v1.get("/metrics", summary="Queue depth, per-stage times, workers (CUDA memory from each GPU worker)")
    async def metrics():
        return await run_in_threadpool(table.metrics)

    @v1.post(
        "/jobs", status_code=202, summary="Submit a photo",
        openapi_extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": _field_docs()}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }}},
        responses={202: {"description": "queued; the body is the job's status, Location its URL"},
                   409: {"description": "options that need other models than the workers loaded"},
                   413: {"description": "upload over the size limit"},
                   422: {"description": "not an image, too many pixels, an unknown or bad option"},
                   503: {"description": "draining (shutting down) or the queue is full"}},
    )
    async def submit(request: Request):
        if service.draining:
            raise JobError("the server is shutting down (draining); no new jobs are taken", 503)
        raw: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in raw:
                raise FieldError(f"{key} given twice")
            raw[key] = value
        body = await _read_body(request, service.max_upload)
        filename = None
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            data, filename = await _multipart(request, body, raw)
        elif request.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded"):
            raise JobError("send the image as a multipart file field named 'image', or as the raw request body", 415)
        else:
            data = body
        if not data:
            raise JobError("no image: send it as a multipart file field named 'image', or as the raw request body", 422)
        sent = job_options(raw, service.options, device_type=service.device_type)
        name = clean_name(sent.name or filename)
        stem = check_stem(sent.stem) if sent.stem else default_stem(name)
        await run_in_threadpool(_check_image, data, name)
        # In a thread: the pool's lock may be held a moment by its collector (a worker restarting,
        # results being filed), and the event loop must keep serving events and DELETEs meanwhile.
        job = await run_in_threadpool(table.submit, data, name, stem, sent.options, sent.fmt,
                                      keep_views=sent.save_views, keep_cutout=sent.save_cutout)
        return JSONResponse(links(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @v1.get("/jobs", summary="Every job the server holds (queued, running, and finished ones within the TTL)")
    async def list_jobs():
        return [{"id": j.id, "name": j.name, "state": j.state} for j in table.jobs()]

    @v1.get("/jobs/{job_id}", summary="A job's state, stage and step; its record and files once finished")
    async def status(job_id: str):
        return links(table.get(job_id))

    @v1.get("/jobs/{job_id}/events", summary="NDJSON: the job's status each time it changes, until it finishes",
            response_class=StreamingResponse)
    async def events(job_id: str):
        job = table.get(job_id)

        async def lines():
            sent = -1
            while True:
                version = job.version
                if version != sent:
                    sent = version
                    state = links(job)
                    yield json.dumps(state) + "\n"
                    if state["state"] in FINISHED:
                        return
                else:
                    yield "\n"
                await table.wait_change(job, sent, HEARTBEAT_SECONDS)

        return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"Cache-Control": "no-store"})

    async def _file(job: "ServerJob", name: str) -> Response:
        path = job.path_of(name)
        data = await read_while_kept(job.id, path.read_bytes)
        return Response(data, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Content-Disposition": attachment(path.name)})

    @v1.get("/jobs/{job_id}/files/{name}", summary="One of the job's files by name (an OBJ's .mtl and texture too)")
    async def file(job_id: str, name: str):
        return await _file(table.get(job_id), name)

    @v1.get("/jobs/{job_id}/mesh", summary="The mesh (GLB, OBJ or PLY, as submitted)")
    async def mesh(job_id: str):
        job = table.get(job_id)
        return await _file(job, job.mesh_path.name)

    @v1.get("/jobs/{job_id}/mesh.zip", summary="The mesh with its side files (OBJ + MTL + PNG) as one zip")
    async def mesh_zip(job_id: str):
        job = table.get(job_id)
        job.path_of(job.mesh_path.name)
        parts = job.mesh_parts()
        data = await read_while_kept(job.id, lambda: _zip(parts))
        return Response(data, media_type="application/zip", headers={"Content-Disposition": attachment(f"{job.stem}.zip")})

    async def _kept(job_id: str, path_of: Callable[["ServerJob"], Path], what: str, field: str) -> Response:
        job = table.get(job_id)
        path = path_of(job)
        if job.state == "done" and not path.exists():
            raise JobError(f"job {job.id} has no {what}; submit it with {field}", 404)
        return await _file(job, path.name)

    @v1.get("/jobs/{job_id}/views.png", summary="The six generated views as a 3×2 grid (unless save-views=false)")
    async def views(job_id: str):
        return await _kept(job_id, lambda job: job.views_path, "views", "save-views=true")

    @v1.get("/jobs/{job_id}/cutout.png", summary="The background-free, recentred input (unless save-cutout=false)")
    async def cutout(job_id: str):
        return await _kept(job_id, lambda job: job.cutout_path, "cut-out", "save-cutout=true")

    @v1.get("/jobs/{job_id}/preview.png", summary="The preview sheet (jobs submitted with preview=true)")
    async def preview(job_id: str):
        return await _kept(job_id, lambda job: job.preview_path, "preview", "preview=true")

    @v1.delete("/jobs/{job_id}", summary="Cancel a job (a queued one never runs) and delete its results")
    async def delete(job_id: str):
        state, note = await run_in_threadpool(table.delete, job_id)
        return {"id": job_id, "state": state, "deleted": True, "note": note}

    app.include_router(v1)
    from instantmesh_cli.serve.page import mount_page

    mount_page(app, service)
    return app


async def read_while_kept(job_id: str, read: Callable[[], bytes]) -> bytes:
    """``read()`` (a job's files, whole, in a thread), or a 404 when the job's folder went meanwhile: a
    DELETE or the TTL between finding the file and reading it is an answer, not a server error."""
    try:
        return await run_in_threadpool(read)
    except FileNotFoundError:
        raise JobError(f"job {job_id} was deleted while its files were being read", 404) from None


def attachment(filename: str) -> str:
    """A Content-Disposition for ``filename``; RFC 6266's ``filename*`` when it is not plain ASCII."""
    quoted = quote(filename)
    return f'attachment; filename="{filename}"' if quoted == filename else f"attachment; filename*=utf-8''{quoted}"


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    too_big = JobError(f"upload over the limit of {limit / 2**20:g} MB (imesh serve --max-upload)", 413)
    if length.isdigit() and int(length) > _DISCARD_FACTOR * limit:
        raise too_big  # the connection is closed after the answer; reading that much would only waste time
    body = bytearray()
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen <= limit:
                body += chunk
            elif seen > _DISCARD_FACTOR * limit:
                break
    except ClientDisconnect:
        raise JobError("the client went away during the upload", 400) from None  # nobody reads this answer
    if seen > limit:
        raise too_big
    return bytes(body)


async def _multipart(request: Request, body: bytes, raw: dict) -> tuple[bytes, str | None]:
    """The one ``image`` file field and the option fields (into ``raw``) of a multipart body read already."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=64, max_part_size=64 * 1024)
    except Exception as exc:  # noqa: BLE001 - python-multipart and starlette raise several types for bad bodies
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise JobError(f"unreadable multipart body: {detail}", 422) from None
    data, filename = b"", None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "image":
                raise JobError(f"file field {key!r}: send the photo as the file field 'image'", 422)
            data, filename = await value.read(), value.filename
        else:
            if key in raw:
                raise FieldError(f"{key} given twice")
            raw[key] = value
    await form.close()
    if not data:
        raise JobError("no image: the multipart body needs a file field named 'image'", 422)
    return data, filename


def _check_image(data: bytes, name: str) -> None:
    from instantmesh_cli.errors import InputError
    from instantmesh_cli.images import load_image

    try:
        load_image(data, name=name)
    except InputError as exc:
        raise JobError(str(exc), 422) from None


def _zip(paths) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            # A fixed date: the same job gives the same zip.
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buf.getvalue()


def stderr_logging() -> dict:
    """uvicorn's logging on stderr only (stdout carries the addresses and nothing else)."""
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "imesh serve: %(levelname)s: %(message)s"}},
        "handlers": {"stderr": handler},
        "loggers": {name: {"handlers": ["stderr"], "level": "WARNING", "propagate": False}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "imesh.serve")},
    }


