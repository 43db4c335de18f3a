"""The ``doractl`` app: its commands, global options, and exit codes.

Exit codes are kubectl's: 0 success, 1 an error (a message on stderr, with the
field paths of an invalid object, and no traceback unless ``--debug``), 2 a usage
error (typer's message). Errors travel as ``dora.api.errors``; only ``main`` turns
them into text, so commands raise rather than print-and-exit.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

from dora.api import errors
from dora.ctl import printers
from dora.ctl.commands import (
    apply,
    config,
    credits,
    delete,
    describe,
    get,
    streams,
    token,
    volumes,
    workload,
    workspaces,
)
from dora.ctl.options import GLOBALS, Settings, global_option

app = typer.Typer(
    name="doractl",
    help="doractl drives Dora: apply YAML, get, describe, delete; scale, stop, start "
         "and roll back workloads; tokens and contexts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")

_SERVER, _TOKEN, _CONTEXT, _ZONE, _WORKSPACE, _DEBUG = (global_option(o) for o in GLOBALS)


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[str | None, _SERVER] = None,
    token: Annotated[str | None, _TOKEN] = None,
    context: Annotated[str | None, _CONTEXT] = None,
    zone: Annotated[str | None, _ZONE] = None,
    workspace: Annotated[str | None, _WORKSPACE] = None,
    debug: Annotated[bool, _DEBUG] = False,
) -> None:
    """doractl drives Dora from the command line, in kubectl's manner.

    Connection settings come from ~/.dora/config.yaml (see `doractl config`),
    $DORA_SERVER and $DORA_TOKEN, or the global options, which every command
    accepts anywhere on its line.
    """
    ctx.obj = Settings(server=server, token=token, context=context, zone=zone,
                       workspace=workspace, debug=debug)


app.add_typer(config.app, name="config")
apply.register(app)
get.register(app)
describe.register(app)
delete.register(app)
workload.register(app)
token.register(app)
workspaces.register(app)
streams.register(app)
credits.register(app)
volumes.register(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run doractl on ``argv``; the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if _names_completion_shell(args):
        # typer's completion options detect the shell unless told not to; when the
        # line names one (`--show-completion zsh`), that one is meant.
        os.environ["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
    try:
        app(args=args, prog_name="doractl")
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
