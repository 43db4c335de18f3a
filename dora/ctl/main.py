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
# the top-level commands each one registers with their one-line help. `doractl NAME
# ...` imports and registers only NAME's module: importing every module (grpc,
# protobuf, rich, yaml...) and having typer build every command cost a few hundred
# milliseconds on each run. `doractl` and `doractl --help` import none: the root's
# help is made from this table (see ``_listing``). A name missing here still works
# (the line then registers every module); tests/unit/test_ctl_cli.py checks this
# table, helps included, against what the modules register.
COMMANDS: dict[str, dict[str, str]] = {
    "config": {"config": "Contexts: which apiserver, token, zone and workspace to use "
                         "(~/.dora/config.yaml, or $DORA_CONFIG)."},
    "apply": {"apply": "Create or update objects from YAML/JSON files, directories or stdin.",
              "diff": "Show what `apply` would change, as a unified diff of YAML."},
    "get": {"get": "Show objects of KIND: all of them, or those named."},
    "describe": {"describe": "Show objects in detail: metadata, spec, status, conditions, "
                             "and what they own."},
    "delete": {"delete": "Delete objects: `delete KIND NAME...`, `delete KIND -l SELECTOR`, "
                         "`delete -f FILE`."},
    "workload": {
        "scale": "Set how many containers a workload runs: `scale workload NAME --replicas N`.",
        "stop": "Stop a workload: its containers go, its definition stays (`start` runs it "
                "again).",
        "start": "Start a stopped workload again.",
        "pause": "Freeze a workload's or a container's processes (`docker pause`); they keep "
                 "their GPUs and CPUs, and credits keep counting.",
        "resume": "Thaw what `pause` froze.",
        "versions": "List the versions of a workload's spec; * marks the one it runs.",
        "rollback": "Restore an earlier version of a workload's spec (replicas and stopped "
                    "stay).",
    },
    "token": {"token": "Create, list and revoke the tokens users and nodes log in with.",
              "whoami": "Who the server takes you for, and where your requests go by default."},
    "workspaces": {"clone": "Copy things: `clone workspace SRC DST`."},
    "streams": {
        "logs": "Print a container's logs (`logs -f web.0`), a workload's (`logs "
                "workload/web`), or a task's job's (`logs task/sweep --job 17`: its last "
                "attempt).",
        "exec": "Run a command in a running container: `exec web.0 -- ls /`, `exec -it web.0 "
                "-- sh`.",
        "shell": "An interactive shell in a running container (`exec -it CONTAINER -- "
                 "/bin/sh`).",
    },
    "credits": {"credits": "Credits used this week, per zone: used / weekly, and what runs "
                           "now costs per hour."},
    "volumes": {"volume": "A volume's files: ls, upload, download, rm.",
                "volumes": "A volume's files: ls, upload, download, rm.",
                "sync": "Mirror LOCAL_DIR into a volume: copy what differs, then follow "
                        "changes (Ctrl-C stops)."},
    "task": {"task": "Tasks of N jobs (seed 003): create, kill, retry."},
    "wait": {"wait": "Wait until objects are in a state: `wait container/web-1 "
                     "--for=phase=Running`, `wait wk/web --for=condition=Available`, `wait "
                     "task/sweep --for=state=Completed`, `wait wk/web --for=delete`."},
    "metadata": {"label": "Set (KEY=VALUE) or remove (KEY-) labels: `label wk/web tier=front "
                          "old-`.",
                 "annotate": "Set (KEY=VALUE) or remove (KEY-) annotations: `annotate wk/web "
                             "owner='ML team'`."},
    "nodes": {"cordon": "Mark a node unschedulable: new containers go elsewhere, running "
                        "ones stay.",
              "uncordon": "Mark a node schedulable again.",
              "drain": "Cordon a node and delete its containers, so their workloads run them "
                       "elsewhere.",
              "node": "Declare a node dead (fence) or alive (unfence)."},
    "edit": {"edit": "Edit an object's YAML in $EDITOR and apply it when the editor exits."},
    "version": {"version": "Print the client's and the server's version."},
    "explain": {"explain": "Describe a kind or one of its fields: type, documentation and "
                           "sub-fields."},
    "top": {"top": "CPU, memory and GPU use of nodes or containers, as their agents report "
                   "it."},
    "ui": {"ui": "Open Dora in the browser, served on 127.0.0.1 and signed in from your "
                 "profiles; keeps the workloads' sync folders live."},
}
# Names of COMMANDS that are groups of subcommands (typer lists them after the
# commands), and those the help does not show.
GROUPS = frozenset({"config", "token", "clone", "volume", "volumes", "task", "node"})
HIDDEN = frozenset({"volumes"})

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


def build(modules: Sequence[str] | None = None) -> typer.Typer:
    """The doractl app with the commands of ``modules`` (of ``dora.ctl.commands``)."""
    app = typer.Typer(
        name="doractl",
        help="doractl drives Dora: apply YAML, get, describe, delete; scale, stop, start "
             "and roll back workloads; tokens and contexts.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    for name in COMMANDS if modules is None else modules:
        module = importlib.import_module(f"dora.ctl.commands.{name}")
        if name == "config":
            app.add_typer(module.app, name="config")
        else:
            module.register(app)
    return app


def app_for(args: Sequence[str]) -> typer.Typer:
    """The app for a command line: only the module of the command it names, when known;
    for the root alone (``doractl``, ``--help``, ``--version``), the listing."""
    word = _command_word(args)
    for module, names in COMMANDS.items():
        if word in names:
            return build((module,))
    if word is None and not any(v.endswith("_COMPLETE") for v in os.environ):
        return _listing()
    return build()


def _listing() -> typer.Typer:
    """The root with each command as a stand-in that has its help from ``COMMANDS``:
    enough to print ``doractl --help`` without importing any command module. A
    completion request (``_DORACTL_COMPLETE``) gets the real commands instead."""
    app = build(())
    for names in COMMANDS.values():
        for name, text in names.items():
            if name in GROUPS:
                app.add_typer(typer.Typer(), name=name, help=text, hidden=name in HIDDEN)
            else:
                app.command(name, help=text, hidden=name in HIDDEN)(_stand_in)
    return app


def _stand_in() -> None:  # never runs: any line naming a command builds the real one
    raise AssertionError("a stand-in command ran")


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
