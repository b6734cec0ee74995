"""The Typer application object and the options every command shares.

Command modules import ``app`` from here and register themselves; this module
imports nothing heavy, so ``imesh --help`` stays fast.
"""

from __future__ import annotations

import copy
import os
from typing import Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from instantmesh_cli.version import __version__


def _no_type_label(param, ctx) -> str:
    return ""  # empty, not None: Typer's help falls back to "<type name>" on None


class _ManPageHelp:
    """Help that reads like a man page: no type labels where they say nothing.

    Typer's rich help labels every option with its type, flags included (``<bool>``),
    unless the option has a metavar; a flag takes no value, so it gets an empty one
    here, once for every command (``--help`` itself included), instead of at each
    declaration. Arguments are named by their metavar (INPUT, VIEWS...) and their
    help says what they take; their ``<str>`` / ``<list[str]>`` label is dropped too.
    """

    help_panel: str | None = None

    def format_help(self, ctx, formatter) -> None:
        help_option = self.get_help_option(ctx)
        for param in self.get_params(ctx):
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            if isinstance(param, TyperArgument):
                # A copy of the (shared) click type with no label: help is the process's last act, so
                # nothing parses with it; the instance attribute shadows the type's method.
                param.type = copy.copy(param.type)
                param.type.get_metavar = _no_type_label
            if param is help_option and self.help_panel:
                param.rich_help_panel = self.help_panel
        super().format_help(ctx, formatter)


class ImeshCommand(_ManPageHelp, TyperCommand):
    # Alone in the default panel, --help would head the page; in a panel of its own it closes it.
    help_panel = "Help"


class ImeshGroup(_ManPageHelp, TyperGroup):
    pass


class ImeshApp(typer.Typer):
    """``typer.Typer`` whose commands all format their help as :class:`ImeshCommand` does."""

    def command(self, *args, cls=ImeshCommand, **kwargs):
        return super().command(*args, cls=cls, **kwargs)


app = ImeshApp(
    name="imesh",
    cls=ImeshGroup,
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
    debug: bool = typer.Option(
        False, "--debug", envvar="IMESH_DEBUG", show_envvar=True,
        help="Full tracebacks, and every library's own messages and progress bars."),
) -> None:
    """Turn a photo into a textured 3D mesh (Zero123++ v1.2 + InstantMesh)."""
    if debug:
        state.debug = True
