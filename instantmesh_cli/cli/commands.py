"""The commands, each in its own module that registers it on the app when imported.

``COMMANDS`` lists them in the order ``imesh --help`` shows. :func:`register` imports only the
one a call names (``imesh generate ...`` needs no other), or all of them for help and a
mistyped name. Building every command's parameters took Typer about 60 ms of each
``imesh generate`` call through a warm server on the H200 machine, where the whole client
process takes about 0.23 s.
"""

from __future__ import annotations

import importlib

from instantmesh_cli.cli.app import app

COMMANDS = ("generate", "multiview", "reconstruct", "prepare", "download", "selftest", "doctor", "bench", "preview",
            "serve")


def _name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def register(command: str | None = None) -> None:
    """Register ``command`` (a name from ``COMMANDS``), or every command for anything else."""
    wanted = [command] if command in COMMANDS else list(COMMANDS)
    for name in wanted:
        importlib.import_module(f"instantmesh_cli.cli.{name}")
    order = {name: k for k, name in enumerate(COMMANDS)}
    # Registration order is listing order; a process that ran one command first still lists all in order.
    app.registered_commands.sort(key=lambda info: order.get(_name(info), len(order)))


def command_named(args: list[str]) -> str | None:
    """The command ``args`` run, when its name comes first (after --debug has been taken out)."""
    return args[0] if args and args[0] in COMMANDS else None
