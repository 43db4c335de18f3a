"""The tutorial's workload verbs: ``scale``, ``stop``, ``start``, ``pause``, ``resume``,
``versions`` and ``rollback``.

Each change is a read-modify-write of the workload's spec: get it, change it, and
apply it back carrying the ``resourceVersion`` it was read at, so a concurrent
change is never overwritten: on a conflict the verb reads again and retries. A
stopped workload keeps its definition (and replica count) and runs no container.

Versions are the ``Workloadversion`` objects the workload controller keeps of
every spec (``<workload>.v<n>``, owned by the workload); scaling and stopping
make none. ``rollback`` applies a version's template with the replica count and
stopped flag left as they are (``dora.api.conventions.rollback``), and the
controller recognises the spec as that version again. The recipes live in
``dora.api.workloads``, shared with ``dora-web``.

``pause`` and ``resume`` freeze and thaw a workload's or a container's Docker
containers through the Pausing call (verbs ``Pause`` and ``Resume``), not an apply.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer

from dora.api import errors, kinds, workloads
from dora.api.client import ApplyResult
from dora.api.v1 import object_pb2
from dora.ctl import columns, humanize, printers, session
from dora.ctl.commands.get import split_kind
from dora.ctl.options import (
    KindArg,
    Output,
    OutputOpt,
    command,
    complete_name,
    kind_of,
    settings_of,
)

NamesArg = Annotated[list[str] | None, typer.Argument(
    metavar="NAME", help="The workloads' names (or KIND/NAME, as get takes).",
    show_default=False, autocompletion=complete_name,
)]
Mutation = workloads.Mutation


def register(app: typer.Typer) -> None:
    command(app, "scale")(scale)
    command(app, "stop")(stop)
    command(app, "start")(start)
    command(app, "pause")(pause)
    command(app, "resume")(resume)
    command(app, "versions")(versions)
    command(app, "rollback")(rollback)


def _workload_kind(word: str) -> kinds.Kind:
    found = kind_of(word)
    if found.name != "Workload":
        raise typer.BadParameter(f"only workloads have this verb, not {found.plural}",
                                 param_hint="KIND")
    return found


def _named(word: str, names: list[str] | None, *,
           kinds_allowed: tuple[str, ...] = ("Workload",)) -> tuple[kinds.Kind, list[str]]:
    """``workload a b`` or ``workload/a b``, as ``get`` takes them: the kind (one of
    ``kinds_allowed``) and the names."""
    found, wanted = split_kind(word, names)
    if found.name not in kinds_allowed:
        allowed = " and ".join(kinds.get(k).plural for k in kinds_allowed)
        raise typer.BadParameter(f"only {allowed} have this verb, not {found.plural}",
                                 param_hint="KIND")
    if not wanted:
        raise typer.BadParameter(f"name the {found.plural} (KIND NAME or KIND/NAME)",
                                 param_hint="NAME")
    return found, wanted


def scale(
    ctx: typer.Context,
    kind: KindArg,
    names: NamesArg,
    replicas: Annotated[int, typer.Option(
        "--replicas", min=0, help="How many containers to run.", show_default=False)],
) -> None:
    """Set how many containers a workload runs: `scale workload NAME --replicas N`."""

    _change(ctx, *_named(kind, names), workloads.scale_to(replicas), done="scaled")


def stop(ctx: typer.Context, kind: KindArg, names: NamesArg) -> None:
    """Stop a workload: its containers go, its definition stays (`start` runs it again)."""

    _change(ctx, *_named(kind, names), workloads.set_stopped(True), done="stopped")


def start(ctx: typer.Context, kind: KindArg, names: NamesArg) -> None:
    """Start a stopped workload again."""

    _change(ctx, *_named(kind, names), workloads.set_stopped(False), done="started")


def _pausable(word: str, names: list[str] | None) -> tuple[kinds.Kind, list[str]]:
    return _named(word, names, kinds_allowed=("Workload", "Container"))


def pause(ctx: typer.Context, kind: KindArg, names: NamesArg) -> None:
    """Freeze a workload's or a container's processes (`docker pause`); they keep their
    GPUs and CPUs, and credits keep counting. `resume` thaws them."""
    _set_paused(ctx, *_pausable(kind, names), paused=True)


def resume(ctx: typer.Context, kind: KindArg, names: NamesArg) -> None:
    """Thaw what `pause` froze."""
    _set_paused(ctx, *_pausable(kind, names), paused=False)


def _set_paused(ctx: typer.Context, kind: kinds.Kind, names: list[str], *,
                paused: bool) -> None:
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> bool:
        ok = True
        zone, workspace = s.scope(kind)
        for name in names:
            try:
                _, changed = await s.client.set_paused(kind.name, name, paused=paused,
                                                       zone=zone, workspace=workspace)
            except errors.Unavailable:
                raise
            except errors.DoraError as exc:
                ok = False
                sys.stdout.flush()
                typer.echo(printers.error_text(exc), err=True)
                continue
            word = "paused" if paused else "resumed"
            count = f" ({len(changed)} container{'s' * (len(changed) != 1)})" if (
                kind.name == "Workload") else ""
            typer.echo(f"{kind.name.lower()}/{name} {word}{count}")
        return ok

    if not session.run(connection, work):
        raise typer.Exit(1)


def _change(ctx: typer.Context, kind: kinds.Kind, names: list[str], mutate: Mutation, *,
            done: str) -> None:
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> bool:
        ok = True
        for name in names:
            try:
                result = await update_spec(s, kind, name, mutate)
            except errors.Unavailable:
                raise
            except errors.DoraError as exc:
                ok = False
                sys.stdout.flush()
                typer.echo(printers.error_text(exc), err=True)
                continue
            word = "unchanged" if result == ApplyResult.UNCHANGED else done
            typer.echo(f"{kind.name.lower()}/{name} {word}")
        return ok

    if not session.run(connection, work):
        raise typer.Exit(1)


async def update_spec(s: session.Session, kind: kinds.Kind, name: str,
                      mutate: Mutation) -> ApplyResult.ValueType:
    """Get, change and apply back at the version read; again on a conflict."""
    zone, workspace = s.scope(kind)
    _, result = await workloads.update_spec(s.client, name, mutate, zone=zone,
                                            workspace=workspace)
    return result


NameArg = Annotated[str, typer.Argument(
    metavar="NAME", help="The workload's name.", show_default=False,
    autocompletion=complete_name,
)]


async def versions_of(s: session.Session, workload: object_pb2.Object) -> list[object_pb2.Object]:
    """The workload's versions, oldest first."""
    return await workloads.versions_of(s.client, workload)


def versions(ctx: typer.Context, kind: KindArg, name: NameArg,
             output: OutputOpt = Output.table) -> None:
    """List the versions of a workload's spec; * marks the one it runs."""
    found = _workload_kind(kind)
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> tuple[object_pb2.Object, list[object_pb2.Object]]:
        workload = await s.get(found, name)
        return workload, await versions_of(s, workload)

    workload, found_versions = session.run(connection, work)
    if output not in (Output.table, Output.wide):
        sys.stdout.write(printers.serialize(found_versions, output))
        return
    if not found_versions:
        typer.echo(f"workload/{name} has no versions yet (the workload controller records "
                   "them)", err=True)
        return
    current = workload.workload.status.current_version
    now = dt.datetime.now(dt.UTC)
    rows = []
    for version in found_versions:
        spec = version.workloadversion.spec
        rows.append(["*" if spec.version == current else "", str(spec.version),
                     spec.template.image.image or "<none>",
                     columns.resources(spec.template) or "<none>",
                     spec.template.config.cmd or "<none>",
                     humanize.age(humanize.when(version.metadata, "creation_timestamp"), now=now)])
    printers.print_table(["CURRENT", "VERSION", "IMAGE", "RESOURCES", "CMD", "AGE"], rows)


def rollback(
    ctx: typer.Context,
    kind: KindArg,
    name: NameArg,
    to_version: Annotated[int | None, typer.Option(
        "--to-version", min=1, show_default=False,
        help="The version to go back to; default: the one before the current.")] = None,
) -> None:
    """Restore an earlier version of a workload's spec (replicas and stopped stay)."""
    found = _workload_kind(kind)
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> tuple[int, ApplyResult.ValueType]:
        zone, workspace = s.scope(found)
        return await workloads.rollback(s.client, name, to_version, zone=zone,
                                        workspace=workspace)

    number, result = session.run(connection, work)
    if result == ApplyResult.UNCHANGED:
        typer.echo(f"workload/{name} unchanged (it is at version {number})")
    else:
        typer.echo(f"workload/{name} rolled back to version {number}")
