"""``imesh serve``: warm workers (one per GPU) behind a job queue and an HTTP API."""

from __future__ import annotations

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.errors import UsageError

D = opt.DEFAULTS


@app.command(rich_help_panel=opt.MAKE, epilog=(
    "Examples:\n\n"
    "  imesh serve --gpus all\n\n"
    "  curl --unix-socket $XDG_RUNTIME_DIR/imesh/serve.sock -F image=@photo.png http://imesh/v1/jobs\n\n"
    "  IMESH_TOKEN=... imesh serve --host 0.0.0.0 --port 8411\n\n"
    "Web page: http://HOST:PORT/ (with --host; /?token=... once when it has a token). "
    "API reference: http://HOST:PORT/docs (or /openapi.json) once it runs."
))
def serve(
    gpus: opt.Gpus = None,
    workers: opt.Workers = 1,
    socket_path: opt.Socket = None,
    host: opt.Host = None,
    port: opt.Port = None,
    token: opt.Token = None,
    ttl: opt.Ttl = 3600.0,
    max_upload: opt.MaxUpload = 32.0,
    quiet: opt.Quiet = False,
    model: opt.Model = D.model,
    device: opt.Device = D.device,
    dtype: opt.Dtype = D.dtype,
    low_vram: opt.LowVram = D.low_vram,
    compile: opt.Compile = D.compile,
    offline: opt.Offline = False,
    weights_dir: opt.WeightsDir = None,
) -> None:
    """Keep the models loaded (a worker per GPU) and take jobs over HTTP; imesh generate uses it by itself."""
    from instantmesh_cli.cli.common import console
    from instantmesh_cli.cli.generate import worker_devices
    from instantmesh_cli.serve.server import listen_from, print_addresses, run_server

    options = opt.pipeline_options(model=model, device=device, dtype=dtype, low_vram=low_vram, compile=compile,
                                   offline=offline, weights_dir=weights_dir.resolve() if weights_dir else None)
    if workers < 1:
        raise UsageError(f"--workers must be 1 or more, got {workers}")
    listen = listen_from(socket_path, host, port).check(token)
    devices = worker_devices(gpus, workers, device, always=True)

    def say(line: str) -> None:
        if not quiet:
            console.print(f"imesh serve: {line}", markup=False, soft_wrap=True)

    def ready(addresses) -> None:
        print_addresses(addresses)
        say("listening on " + ", ".join(a.url for a in addresses))
        for address in addresses:
            if address.port is not None:
                # The token is not printed: logs keep lines like this one.
                say(f"web page: {address.url}/" + (" (open /?token=YOUR_TOKEN once, or type it in)" if token else ""))

    code = run_server(options, devices, listen, token=token, ttl=ttl, max_upload=int(max_upload * 2**20),
                      ready=ready, say=say)
    if code:
        raise typer.Exit(code=code)
