"""The ``doractl`` app: its commands, global options, and exit codes.

Exit codes are kubectl's: 0 success, 1 an error (a message on stderr, with the
field paths of an invalid object, and no traceback unless ``--debug``), 2 a usage
error (typer's message). Errors travel as ``dora.api.errors``; only ``main`` turns
them into text, so commands raise rather than print-and-exit.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from dora.api import errors
from dora.ctl import printers
from dora.ctl.options import GLOBALS, Settings, global_option

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")

# Every module of dora/ctl/commands, in the order `doractl --help` lists them, and
# the top-level command names each one registers. `doractl NAME ...` imports and
# registers only NAME's module: importing every module (rich, progress bars...)
# and having typer build every command cost a few hundred milliseconds on each
# run. A name missing here still works (the line then registers every module);
# tests/unit/test_ctl_cli.py checks this table against what the modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    "config": ("config",),
    "apply": ("apply", "diff"),
    "get": ("get",),
    "describe": ("describe",),
    "delete": ("delete",),
    "workload": ("scale", "stop", "start", "pause", "resume", "versions", "rollback"),
    "token": ("token", "whoami"),
    "workspaces": ("clone",),
    "streams": ("logs", "exec", "shell"),
    "credits": ("credits",),
    "volumes": ("volume", "volumes", "sync"),
    "task": ("task",),
    "wait": ("wait",),
    "metadata": ("label", "annotate"),
    "nodes": ("cordon", "uncordon", "drain", "node"),
    "edit": ("edit",),
    "version": ("version",),
    "ui": ("ui",),
}

_SERVER, _TOKEN, _CONTEXT, _ZONE, _WORKSPACE, _DEBUG = (global_option(o) for o in GLOBALS)
# Global options that take a value: skipped when looking for the command's name.
_VALUED = frozenset(d for o in GLOBALS if not o.is_flag for d in o.decls)


def _print_version(value: bool) -> None:
    if value:
        import dora

        typer.echo(f"doractl {dora.__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    server: Annotated[str | None, _SERVER] = None,
    token: Annotated[str | None, _TOKEN] = None,
    context: Annotated[str | None, _CONTEXT] = None,
    zone: Annotated[str | None, _ZONE] = None,
    workspace: Annotated[str | None, _WORKSPACE] = None,
    debug: Annotated[bool, _DEBUG] = False,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print the client's version and exit (`doractl version` asks the server too).",
    )] = False,
) -> None:
    """doractl drives Dora from the command line, in kubectl's manner.

    Connection settings come from ~/.dora/config.yaml (see `doractl config`),
    $DORA_SERVER and $DORA_TOKEN, or the global options, which every command
    accepts anywhere on its line.
    """
    ctx.obj = Settings(server=server, token=token, context=context, zone=zone,
                       workspace=workspace, debug=debug)


def build(modules: Sequence[str] = tuple(COMMANDS)) -> typer.Typer:
    """The doractl app with the commands of ``modules`` (of ``dora.ctl.commands``)."""
    app = typer.Typer(
        name="doractl",
        help="doractl drives Dora: apply YAML, get, describe, delete; scale, stop, start "
             "and roll back workloads; tokens and contexts.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    for name in modules:
        module = importlib.import_module(f"dora.ctl.commands.{name}")
        if name == "config":
            app.add_typer(module.app, name="config")
        else:
            module.register(app)
    return app


def app_for(args: Sequence[str]) -> typer.Typer:
    """The app for a command line: only the module of the command it names, when known."""
    word = _command_word(args)
    for module, names in COMMANDS.items():
        if word in names:
            return build((module,))
    return build()


def _command_word(args: Sequence[str]) -> str | None:
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--":
            return None
        elif arg.startswith("-"):
            skip = arg in _VALUED
        else:
            return arg
    return None


def __getattr__(name: str) -> typer.Typer:
    # ``main.app``: every command, built when first asked for (tests, completion).
    if name == "app":
        app = build()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(argv: Sequence[str] | None = None) -> int:
    """Run doractl on ``argv``; the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if _names_completion_shell(args):
        # typer's completion options detect the shell unless told not to; when the
        # line names one (`--show-completion zsh`), that one is meant.
        os.environ["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
    try:
        app_for(args)(args=args, prog_name=_prog_name())
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except errors.DoraError as exc:
        if debug:
            traceback.print_exc()
        sys.stdout.flush()
        print(printers.error_text(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _prog_name() -> str:
    """``dora`` when started as seed 004's ``dora`` (the same program), else ``doractl``."""
    return "dora" if Path(sys.argv[0]).name == "dora" else "doractl"


def _names_completion_shell(args: list[str]) -> bool:
    for option in ("--show-completion", "--install-completion"):
        for index, arg in enumerate(args):
            if arg.startswith(option + "=") and arg.partition("=")[2] in SHELLS:
                return True
            if arg == option and index + 1 < len(args) and args[index + 1] in SHELLS:
                return True
    return False


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))
