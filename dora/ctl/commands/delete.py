"""``doractl delete``: objects by name, by selector, or those a file declares.

Each object is deleted on its own and reported as ``kind/name deleted``; a
missing one is an error (exit 1) unless ``--ignore-not-found``, and the others
are still deleted. An object with finalizers is only marked (its
``deletionTimestamp``) until its controllers let go: ``--wait`` waits until every
deleted object is really gone, watching from the version it last read (so no
deletion in between is missed) and reading again every few seconds, and then
until what it owned (a workload's containers, deleted by the garbage collector
right after it) is gone too, up to ``--timeout``.

``delete container NAME --scale-down`` is the dashboard's trash button: the
container goes and its workload's replica count drops by one, in one conditional
Apply of the Workload (``conventions.scale_down``), retried on a conflict. A plain
``delete container`` is the reload button: the workload controller creates a
fresh one.

``delete task NAME`` deletes the task and, through their owner references, its
jobs' containers; the outputs on the volume stay, unless ``--purge-output``, which
then deletes the task's output folder (``spec.output``) too.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from dora.api import errors, kinds, volumes, waiting, workloads
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, volumes_pb2
from dora.ctl import humanize, manifests, printers, session
from dora.ctl.commands.get import split_kind
from dora.ctl.options import (
    FilesOpt,
    RecursiveOpt,
    SelectorOpt,
    command,
    complete_kind,
    complete_name,
    settings_of,
)


def register(app: typer.Typer) -> None:
    command(app, "delete")(delete)


def _timeout(text: str) -> float:
    try:
        return humanize.parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def delete(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument(
        metavar="KIND", help="A kind (wk, c, vol, ...); not with -f.",
        autocompletion=complete_kind, show_default=False)] = None,
    names: Annotated[list[str] | None, typer.Argument(
        metavar="NAME", help="Names of the objects to delete.", show_default=False,
        autocompletion=complete_name)] = None,
    files: FilesOpt = [],  # noqa: B006  (typer reads the default; never mutated)
    recursive: RecursiveOpt = False,
    selector: SelectorOpt = "",
    all_objects: Annotated[bool, typer.Option(
        "--all", help="Every object of KIND in the zone and workspace.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until the objects are gone, not only marked for deletion.",
    )] = False,
    timeout: Annotated[str, typer.Option(
        "--timeout", metavar="DURATION", help="How long --wait waits: 30s, 2m, 1h.",
    )] = "60s",
    ignore_not_found: Annotated[bool, typer.Option(
        "--ignore-not-found", help="An object that does not exist is not an error.",
    )] = False,
    all_workspaces: Annotated[bool, typer.Option(
        "--all-workspaces", "-A", help="With -l or --all: in every zone and workspace.",
    )] = False,
    scale_down: Annotated[bool, typer.Option(
        "--scale-down", help="Containers only: also lower their workload's replica count, "
        "so no fresh container replaces them.",
    )] = False,
    purge_output: Annotated[bool, typer.Option(
        "--purge-output", help="Tasks only: also delete their output folders on the volume.",
    )] = False,
) -> None:
    """Delete objects: `delete KIND NAME...`, `delete KIND -l SELECTOR`, `delete -f FILE`."""
    limit = _timeout(timeout)
    found_kind, refs, objs_from_files = _targets(kind, names, files, recursive=recursive,
                                                 selector=selector, all_objects=all_objects)
    if scale_down and (found_kind is None or found_kind.name != "Container"):
        raise typer.BadParameter("--scale-down is for containers: delete container NAME "
                                 "--scale-down")
    if purge_output and (found_kind is None or found_kind.name != "Task"):
        raise typer.BadParameter("--purge-output is for tasks: delete task NAME --purge-output")
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> bool:
        targets: list[Ref] = []
        if found_kind is None:
            targets = [_ref_of(s.fill_scope(o)) for o in objs_from_files or []]
        elif refs:
            targets = [s.ref(found_kind, name) for name in refs]
        else:
            zone, workspace = s.scope(found_kind, everywhere=all_workspaces)
            _refuse_everywhere_unasked(found_kind, zone, workspace, all_workspaces)
            items, _ = await s.client.list(found_kind.name, zone=zone, workspace=workspace,
                                           label_selector=selector)
            targets = [_ref_of(o) for o in items]
            if not targets:
                typer.echo(f"No {found_kind.plural} found.", err=True)
        ok, deleted = True, []
        for ref in targets:
            name = f"{ref.kind.lower()}/{ref.name}"
            try:
                if scale_down:
                    deleted.append(await _scale_down(s, ref))
                else:
                    deleted.append(await s.client.delete(ref.kind, ref.name, zone=ref.zone,
                                                         workspace=ref.workspace))
            except errors.NotFound as exc:
                if not ignore_not_found:
                    ok = False
                    sys.stdout.flush()
                    typer.echo(printers.error_text(exc), err=True)
                continue
            except errors.Unavailable:
                raise
            except errors.DoraError as exc:
                ok = False
                typer.echo(printers.error_text(exc, about=name), err=True)
                continue
            typer.echo(_deleted_line(name, deleted[-1]))
            if purge_output:
                typer.echo(await _purge_output(s, deleted[-1]))
        if wait and deleted:
            names = ", ".join(printers.object_name(o) for o in deleted)
            what = f"{names} to be gone"
            try:
                async with asyncio.timeout(limit):
                    await asyncio.gather(*(wait_gone(s, obj) for obj in deleted))
                    # What they owned (a workload's containers): the garbage collector's.
                    what = (f"what {names} owned to be gone (is dora-controllers' garbage "
                            "collector running?)")
                    await asyncio.gather(*(waiting.dependents_gone(s.client, obj)
                                           for obj in deleted))
            except TimeoutError:
                raise errors.DoraError(f"timed out after {timeout} waiting for {what}") from None
        return ok

    if not session.run(connection, work):
        raise typer.Exit(1)


def _targets(
    kind: str | None, names: list[str] | None, files: list[str], *, recursive: bool,
    selector: str, all_objects: bool,
) -> tuple[kinds.Kind | None, list[str], list[object_pb2.Object] | None]:
    """What the command line names: a kind and names, or the objects of files."""
    if files:
        if kind or names or selector or all_objects:
            raise typer.BadParameter("with -f, give no KIND, NAME, -l or --all")
        # The reverse of apply's order: what runs goes before what it runs on.
        return None, [], manifests.in_dependency_order(
            manifests.load(files, recursive=recursive), reverse=True)
    if kind is None:
        raise typer.BadParameter("give KIND and NAMEs, KIND and -l/--all, or -f FILE",
                                 param_hint="KIND")
    found_kind, wanted = split_kind(kind, names)
    if wanted and (selector or all_objects):
        raise typer.BadParameter("give names or -l/--all, not both")
    if not wanted and not selector and not all_objects:
        raise typer.BadParameter(
            f"name the {found_kind.plural} to delete, or select them with -l or --all",
            param_hint="NAME",
        )
    return found_kind, wanted, None


async def _scale_down(s: session.Session, ref: Ref) -> object_pb2.Object:
    """Remove the Container ``ref`` through its Workload; the Container as it was."""
    return await workloads.scale_down_container(s.client, ref.name, zone=ref.zone,
                                                workspace=ref.workspace)


async def _purge_output(s: session.Session, task: object_pb2.Object) -> str:
    """Delete a deleted task's output folder; what was done, as a line."""
    output, meta = task.task.spec.output, task.metadata
    target = volumes_pb2.VolumeTarget(zone=meta.zone, name=output.volume,
                                      workspace=output.workspace or meta.workspace)
    path = volumes.clean(output.path, field="spec.output.path")
    if not path:
        return f"task/{meta.name}: its output is the volume's root: not purged"
    count = await s.client.volume_files().delete(target, [path], recursive=True)
    return f"task/{meta.name}: output {target.name}:{path} purged ({count} deleted)"


def _refuse_everywhere_unasked(kind: kinds.Kind, zone: str, workspace: str,
                               everywhere: bool) -> None:
    """A selector with no zone or workspace would reach every one: only when asked."""
    unscoped = (kind.zoned and not zone) or (kind.workspaced and not workspace)
    if unscoped and not everywhere:
        raise errors.Invalid(
            f"no zone or workspace to delete {kind.plural} in: give -z and -g (or set them "
            "in the context), or -A for every zone and workspace"
        )


def _ref_of(obj: object_pb2.Object) -> Ref:
    meta = obj.metadata
    return Ref(obj.kind, meta.zone, meta.workspace, meta.name)


async def wait_gone(s: session.Session, deleted: object_pb2.Object) -> None:
    """Return once ``deleted`` no longer exists (an object of the same name with another
    uid is someone else's): ``waiting.wait``'s ``delete``, as ``doractl wait`` has it."""
    meta = deleted.metadata
    await waiting.wait(s.client, deleted.kind, meta.name, waiting.Condition("delete"),
                       zone=meta.zone, workspace=meta.workspace, uid=meta.uid)


def _deleted_line(name: str, obj: object_pb2.Object) -> str:
    """``kind/name deleted``; for a Volume still in use, that it is held and by whom."""
    meta = obj.metadata
    if (obj.kind == "Volume" and meta.HasField("deletion_timestamp")
            and volumes.FINALIZER in meta.finalizers and obj.volume.status.used_by):
        return (f"{name} is in use by {', '.join(obj.volume.status.used_by)}: it is deleted "
                "once they stop")
    return f"{name} deleted"
