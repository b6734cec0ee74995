"""Command-line entry point: ``imesh`` (and ``python -m instantmesh_cli``).

``main`` runs the Typer app and turns every failure into one line on stderr and
an exit code: 0 all done, 1 something failed, 2 usage error, 130 interrupted; then it
ends the process without the interpreter's teardown (:mod:`instantmesh_cli.process_exit`).
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Sequence

from instantmesh_cli.startup import prepare_process

prepare_process()  # first, before any library is imported (startup.py says what it saves)

import typer  # noqa: E402

from instantmesh_cli.cli.app import app, state
from instantmesh_cli.cli.common import error_line, warn_line
from instantmesh_cli.signals import Interrupted, stop_on_signals
from instantmesh_cli.errors import ImeshError

from instantmesh_cli.cli import commands  # noqa: E402

__all__ = ["app", "main", "run"]


# Typer 0.27.1-0.28 (see pyproject) bundles its own copy of click and raises that copy's
# exceptions; only Exit and Abort have public names.
from typer._click import exceptions as _click  # noqa: E402

_EXIT = (typer.Exit,)
_ABORT = (typer.Abort,)
_USAGE = (_click.UsageError,)
_CLICK_ERROR = (_click.ClickException,)
_NO_ARGS = (_click.NoArgsIsHelpError,)


def _is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings (a slower fallback, a skipped step) as one line; other libraries' only with --debug."""
    if "instantmesh_cli" in str(filename) or state.debug:
        warn_line(str(message))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is read here, wherever it stands (before or after the command), and removed.
    options_end = args.index("--") if "--" in args else len(args)
    state.debug = bool(os.environ.get("IMESH_DEBUG")) or "--debug" in args[:options_end]  # per call, never left over
    args = [a for i, a in enumerate(args) if not (a == "--debug" and i < options_end)]
    commands.register(commands.command_named(args))  # only the command asked for; help and typos get all
    warnings.showwarning = _show_warning
    if not state.debug:
        from instantmesh_cli.quiet import silence_libraries

        silence_libraries()
    try:
        with stop_on_signals():
            result = app(args=args, prog_name="imesh", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except _EXIT as exc:
        cause = exc.__cause__
        if isinstance(cause, KeyboardInterrupt):  # Typer turns an interrupt into Exit(130) before we see it
            error_line("interrupted" + (f" by {cause.signal_name}" if isinstance(cause, Interrupted) else ""))
            return cause.exit_code if isinstance(cause, Interrupted) else 130
        return exc.exit_code
    except _ABORT:
        error_line("interrupted")
        return 130
    except _NO_ARGS as exc:
        exc.show()  # the help text: asking for nothing is asking for help
        return 0
    except _USAGE as exc:
        command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "imesh"
        error_line(f"{exc.format_message()} (see '{command} --help')")
        return 2
    except _CLICK_ERROR as exc:
        error_line(exc.format_message())
        return exc.exit_code
    except KeyboardInterrupt as exc:
        error_line("interrupted" + (f" by {exc.signal_name}" if isinstance(exc, Interrupted) else ""))
        return exc.exit_code if isinstance(exc, Interrupted) else 130
    except ImeshError as exc:
        if state.debug:
            traceback.print_exc()
        error_line(str(exc))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if state.debug:
            traceback.print_exc()
        if _is_out_of_memory(exc):
            error_line("out of GPU memory; try --low-vram, a smaller --texture-size, or --dtype fp16")
        else:
            error_line(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1


def main() -> None:
    from instantmesh_cli.process_exit import exit_promptly

    exit_promptly(run())
