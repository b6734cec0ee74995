"""The Typer application object and the options every command shares.

Command modules import ``app`` from here and register themselves; this module
imports nothing heavy, so ``imesh --help`` stays fast.
"""

from __future__ import annotations

import os
from typing import Optional

import typer

from instantmesh_cli.version import __version__

app = typer.Typer(
    name="imesh",
    help="Turn a photo into a textured 3D mesh (Zero123++ v1.2 + InstantMesh).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class GlobalState:
    debug: bool = bool(os.environ.get("IMESH_DEBUG"))


state = GlobalState()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"imesh {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    """Turn a photo into a textured 3D mesh (Zero123++ v1.2 + InstantMesh)."""
    if debug:
        state.debug = True
