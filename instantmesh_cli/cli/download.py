"""``imesh download``: fetch and verify the weights, into the cache or a folder.

The Hub files come through :mod:`instantmesh_cli.hub`; the rembg matting model (one
more row, ``--matting NAME``, skipped with ``--no-rembg``) through
:mod:`instantmesh_cli.images.matting_fetch`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from instantmesh_cli.cli import options as opt
from instantmesh_cli.cli.app import app
from instantmesh_cli.cli.common import console

# status -> (colour, counts as a failure)
_STATUS_STYLE = {
    "ok": ("green", False),
    "downloaded": ("cyan", False),
    "copied": ("cyan", False),
    "repaired": ("yellow", False),
    "missing": ("red", True),
    "bad": ("red", True),
}


@app.command(rich_help_panel=opt.SETUP, epilog=(
    "Examples:\n"
    "  imesh download\n"
    "  imesh download --model instant-mesh-base\n"
    "  imesh download --all --to /mnt/usb/imesh-weights\n"
    "  imesh download --matting isnet-general-use"
))
def download(
    model: Annotated[Optional[opt.ModelName], typer.Option(
        "--model", "-m", metavar="NAME", rich_help_panel=opt.WEIGHTS, show_default=False,
        help=f"Model whose files to fetch (default: instant-mesh-large): {opt.MODEL_CHOICES}.")] = None,
    all_models: Annotated[bool, typer.Option(
        "--all", rich_help_panel=opt.WEIGHTS, help="Fetch the files of every model.")] = False,
    to: Annotated[Optional[Path], typer.Option(
        "--to", metavar="DIR", file_okay=False, rich_help_panel=opt.WEIGHTS, show_default=False,
        help="Write the files to DIR/<repo>/<file> and the rembg model to DIR/rembg/, with a manifest (for "
        "--weights-dir on a machine without network), instead of the Hugging Face cache and rembg's home.")] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", rich_help_panel=opt.WEIGHTS, envvar="HF_HUB_OFFLINE", show_envvar=True,
        help="Download nothing: only check the files already here.")] = False,
    weights_dir: Annotated[Optional[Path], typer.Option(
        "--weights-dir", metavar="DIR", file_okay=False, rich_help_panel=opt.WEIGHTS, envvar="IMESH_WEIGHTS_DIR",
        show_envvar=True, show_default=False, help="Also accept files from this folder.")] = None,
    matting: opt.Matting = opt.DEFAULTS.matting_model,
    no_rembg: opt.NoRembg = False,
    as_json: opt.ReportJson = False,
    quiet: opt.ReportQuiet = False,
) -> None:
    """Fetch and verify the weights a model needs and the background-removal model (resumable; a second run
    downloads nothing).

    The rembg model (--matting, default u2net) comes from rembg's GitHub release, or from the mirror
    in IMESH_MATTING_URL; --no-rembg leaves it out.
    """
    from instantmesh_cli import settings
    from instantmesh_cli.errors import UsageError
    from instantmesh_cli.images.matting_fetch import pin_for

    if model and all_models:
        raise UsageError("give either --model or --all, not both")
    if all_models:
        files = settings.all_files()
    else:
        files = settings.model_files(settings.get_variant(model or settings.DEFAULT_VARIANT).name)
    matting_file = None if no_rembg else pin_for(matting)  # an unknown name fails before any download
    rows = _fetch_all(files, matting_file, to=to, offline=offline or None, weights_dir=weights_dir,
                      quiet=as_json or quiet)
    failed = [r for r in rows if _STATUS_STYLE[r["status"]][1]]
    if as_json:
        typer.echo(json.dumps({"files": rows, "ok": not failed}, indent=1))
    else:
        _print_table(rows)
    if failed:
        raise typer.Exit(code=1)


def _fetch_all(files, matting_file, *, to: Path | None, offline: bool | None, weights_dir: Path | None,
               quiet: bool) -> list[dict]:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    from rich.markup import escape

    from instantmesh_cli import hub
    from instantmesh_cli.errors import WeightsError

    rows: list[dict] = []
    unreachable: str | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
        for f in files:
            task = bar.add_task(f"{f}", total=None)

            def progress(done: int, total: int | None, _task=task) -> None:
                bar.update(_task, completed=done, total=total)

            row = {"kind": "hub", "repo": f.repo_id, "file": f.filename, "revision": f.revision, "path": None,
                   "size": None, "status": "ok", "detail": ""}
            # Once the Hub has proved unreachable, check the rest without network.
            file_offline = True if unreachable else offline
            try:
                if to is not None:
                    result = hub.export_to_dir(f, to, offline=file_offline, progress=progress)
                else:
                    result = hub.ensure(f, offline=file_offline, weights_dir=weights_dir, progress=progress)
                row.update(path=str(result.path), size=result.path.stat().st_size, status=result.status,
                           detail=result.source)
            except hub.DownloadInterruptedError as exc:  # the Hub answers: try the other files
                row.update(status="missing", detail=exc.message)
            except hub.HubUnreachableError as exc:
                unreachable = str(exc)
                row.update(status="missing", detail=exc.message)
            except hub.CorruptWeightsError as exc:
                row.update(status="bad", detail=exc.message)
            except hub.MissingWeightsError as exc:
                row.update(status="missing", detail="hub unreachable" if unreachable else exc.message)
            except WeightsError as exc:
                row.update(status="missing", detail=exc.message)
            bar.remove_task(task)
            rows.append(row)
        if matting_file is not None:
            # Not from the Hub: an unreachable Hub says nothing about rembg's server.
            rows.append(_fetch_matting(bar, matting_file, to=to, offline=offline, weights_dir=weights_dir))
    if unreachable:
        console.print(f"[red]{escape(unreachable)}[/red]", highlight=False)
    return rows


def _fetch_matting(bar, matting_file, *, to: Path | None, offline: bool | None, weights_dir: Path | None) -> dict:
    from instantmesh_cli import hub
    from instantmesh_cli.errors import WeightsError
    from instantmesh_cli.images import matting_fetch

    task = bar.add_task(f"rembg/{matting_file.filename}", total=matting_file.size)

    def progress(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    row = {"kind": "matting", "repo": "rembg", "file": matting_file.filename, "revision": f"md5:{matting_file.md5}",
           "path": None, "size": None, "status": "ok", "detail": ""}
    try:
        if to is not None:
            result = matting_fetch.export_matting(matting_file.model, to, offline=offline, progress=progress)
        else:
            result = matting_fetch.ensure_matting(matting_file.model, offline=offline, weights_dir=weights_dir,
                                                  progress=progress)
        row.update(path=str(result.path), size=result.path.stat().st_size, status=result.status,
                   detail=result.source)
    except hub.CorruptWeightsError as exc:
        row.update(status="bad", detail=str(exc))
    except WeightsError as exc:
        row.update(status="missing", detail=str(exc))
    bar.remove_task(task)
    return row


def _print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for name in ("status", "file", "size", "detail"):
        table.add_column(name, justify="right" if name == "size" else "left",
                         overflow="fold", no_wrap=name in ("status", "size"))
    for r in rows:
        colour, _ = _STATUS_STYLE[r["status"]]
        table.add_row(f"[{colour}]{r['status']}[/{colour}]", escape(f"{r['repo']}/{r['file']}"),
                      _human(r["size"]), escape(r["detail"]))
    out = Console(highlight=False, soft_wrap=True)  # the report is the command's output: stdout
    out.print(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    total = sum(r["size"] or 0 for r in rows)
    out.print(", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {_human(total)} on disk")


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
