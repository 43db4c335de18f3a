"""``doractl apply`` and ``doractl diff``: declare objects from YAML, or see what that would change.

Both read every ``-f`` first (``manifests``): a document that does not parse
stops the command before anything is sent. ``apply`` then applies objects in
dependency order (zones, workspaces, roles, users, storages, nodes, volumes, credits,
workloads: ``manifests.APPLY_ORDER``; the order written within a kind), so a
product document's page pasted as one file applies in one go, and goes on past
an object the server rejects, as kubectl does, reporting each and exiting 1.
``diff`` asks the server what an apply would store (a server-side dry run, so
defaults and validation are the server's) and diffs its YAML against the live object.
``apply --wait`` then waits (``dora.api.waiting``) until the workloads applied are
Available, for their latest spec, and the volumes Ready.
"""

from __future__ import annotations

import asyncio
import difflib
import enum
import sys
from typing import Annotated

import typer
import yaml

from dora.api import codec, errors, waiting
from dora.api.client import ApplyResult
from dora.api.v1 import object_pb2
from dora.ctl import humanize, manifests, printers, session, templating
from dora.ctl.options import FilesOpt, RecursiveOpt, command, settings_of


class DryRun(enum.StrEnum):
    none = "none"
    server = "server"


RESULT_WORDS = {
    ApplyResult.CREATED: "created",
    ApplyResult.CONFIGURED: "configured",
    ApplyResult.UNCHANGED: "unchanged",
}

EnvOpt = Annotated[list[str], typer.Option(
    "--env", "-e", metavar="KEY=VALUE",
    help="Replace $KEY (or ${KEY}) in the files' values with VALUE; repeatable. "
         "With -e, every $KEY used must be given ($$ is a literal $).",
    show_default=False,
)]


def register(app: typer.Typer) -> None:
    command(app, "apply")(apply)
    command(app, "diff")(diff)


def load(files: list[str], *, recursive: bool, env: list[str]) -> list[object_pb2.Object]:
    """The objects of ``files``, templated when ``-e`` was given."""
    if not files:
        raise typer.BadParameter("give at least one -f FILE|DIR|-", param_hint="-f")
    try:
        values = templating.parse_assignments(env) if env else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="-e") from None
    return manifests.load(files, recursive=recursive, values=values)


def apply(
    ctx: typer.Context,
    files: FilesOpt = [],  # noqa: B006  (typer reads the default; never mutated)
    recursive: RecursiveOpt = False,
    env: EnvOpt = [],  # noqa: B006
    dry_run: Annotated[DryRun, typer.Option(
        "--dry-run", help="server: validate and default on the server, store nothing.",
        case_sensitive=False)] = DryRun.none,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Then wait until the workloads applied are Available (their "
                       "containers running) and the volumes Ready.")] = False,
    timeout: Annotated[str, typer.Option(
        "--timeout", metavar="DURATION", help="How long --wait waits in all: 30s, 5m.",
    )] = "5m",
) -> None:
    """Create or update objects from YAML/JSON files, directories or stdin.

    Prints `kind/name created|configured|unchanged` for each object. Objects that
    name no zone or workspace get the context's (or -z/-g).
    """
    if wait and dry_run is DryRun.server:
        raise typer.BadParameter("a dry run stores nothing to wait for", param_hint="--wait")
    try:
        limit = humanize.parse_duration(timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--timeout") from None
    objs = load(files, recursive=recursive, env=env)
    connection = settings_of(ctx).connection()
    server_dry_run = dry_run is DryRun.server
    suffix = " (server dry run)" if server_dry_run else ""

    async def work(s: session.Session) -> bool:
        ok = True
        written = []
        for obj in manifests.in_dependency_order(objs):
            s.fill_scope(obj)
            try:
                stored, result = await s.client.apply(obj, dry_run=server_dry_run)
                written.append(stored)
            except errors.Unavailable:
                raise
            except errors.DoraError as exc:
                ok = False
                sys.stdout.flush()
                typer.echo(printers.error_text(exc, about=printers.object_name(obj)), err=True)
                continue
            typer.echo(f"{printers.object_name(obj)} {RESULT_WORDS.get(result, 'applied')}{suffix}")
        if wait:
            await wait_ready(s, written, limit)
        return ok

    if not session.run(connection, work):
        raise typer.Exit(1)


# What `apply --wait` waits for, per kind: the state its controller reports when it
# has done what the spec asks.
READY = {"Workload": (waiting.Condition("condition", "Available"), "available"),
         "Volume": (waiting.Condition("condition", "Ready"), "ready")}


async def wait_ready(s: session.Session, written: list[object_pb2.Object],
                     limit: float) -> None:
    async def one(obj: object_pb2.Object) -> None:
        condition, word = READY[obj.kind]
        meta = obj.metadata
        await waiting.wait(s.client, obj.kind, meta.name, condition, zone=meta.zone,
                           workspace=meta.workspace, timeout=limit)
        typer.echo(f"{printers.object_name(obj)} {word}")

    await asyncio.gather(*(one(o) for o in written if o.kind in READY))


_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation")


def diff_text(live: object_pb2.Object | None, applied: object_pb2.Object) -> str:
    """A unified diff of the YAML of ``live`` (None: absent) and ``applied``, without
    the fields only the server sets."""
    name = printers.object_name(applied)
    before = _yaml(live).splitlines(keepends=True) if live is not None else []
    after = _yaml(applied).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, f"live/{name}", f"applied/{name}"))


def _yaml(obj: object_pb2.Object) -> str:
    data = codec.to_dict(obj)
    for key in _SERVER_FIELDS:
        data["metadata"].pop(key, None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def diff(
    ctx: typer.Context,
    files: FilesOpt = [],  # noqa: B006
    recursive: RecursiveOpt = False,
    env: EnvOpt = [],  # noqa: B006
) -> None:
    """Show what `apply` would change, as a unified diff of YAML.

    Exit status: 0 no change, 1 changes (or an error).
    """
    objs = load(files, recursive=recursive, env=env)
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> tuple[list[str], bool]:
        diffs, ok = [], True
        for obj in objs:
            s.fill_scope(obj)
            try:
                applied, result = await s.client.apply(obj, dry_run=True)
                if result == ApplyResult.UNCHANGED:
                    continue
                live: object_pb2.Object | None = None
                if result != ApplyResult.CREATED:
                    meta = applied.metadata
                    live = await s.client.get(applied.kind, meta.name, zone=meta.zone,
                                              workspace=meta.workspace)
            except errors.Unavailable:
                raise
            except errors.DoraError as exc:
                ok = False
                typer.echo(printers.error_text(exc, about=printers.object_name(obj)), err=True)
                continue
            text = diff_text(live, applied)
            if text:
                diffs.append(text)
        return diffs, ok

    diffs, ok = session.run(connection, work)
    _print_diffs(diffs)
    if diffs or not ok:
        raise typer.Exit(1)


def _print_diffs(diffs: list[str]) -> None:
    if not printers.is_terminal(sys.stdout):
        sys.stdout.write("".join(diffs))
        return
    from rich.console import Console  # only diff prints with rich: apply starts faster

    console = Console(highlight=False)
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for text in diffs:
        for line in text.splitlines():
            style = "bold" if line.startswith(("+++", "---")) else styles.get(line[:1])
            console.print(line, style=style, markup=False)
