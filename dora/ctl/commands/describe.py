"""``doractl describe``: one object for a person to read.

Metadata as labelled lines, spec and status as indented YAML, conditions as a
table with their ages; a Workload adds the Containers it owns (those whose
``ownerReferences`` carry its uid), a Node its GPUs and the Containers bound to
it; last, the Events recorded about the object (for a Workload, about its
Containers too), as ``kubectl describe`` ends. Nodes have no Events: the
controllers only log what happens to objects without a workspace. Rendering is a
pure function of the objects and the time, tested as text.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Awaitable, Sequence
from typing import Annotated, Any

import typer
import yaml

from dora.api import codec, errors, kinds, tasks
from dora.api.v1 import object_pb2
from dora.ctl import columns, humanize, printers, session
from dora.ctl.commands import task as task_command
from dora.ctl.commands.get import AllOpt, split_kind
from dora.ctl.options import KindArg, SelectorOpt, command, complete_name, settings_of

LABEL_WIDTH = 20


def register(app: typer.Typer) -> None:
    command(app, "describe")(describe)


def describe(
    ctx: typer.Context,
    kind: KindArg,
    names: Annotated[list[str] | None, typer.Argument(
        metavar="NAME", help="Objects to describe; default: all (or those -l selects).",
        show_default=False, autocompletion=complete_name)] = None,
    selector: SelectorOpt = "",
    all_workspaces: AllOpt = False,
) -> None:
    """Show objects in detail: metadata, spec, status, conditions, and what they own."""
    found_kind, wanted = split_kind(kind, names)
    if selector and wanted:
        raise typer.BadParameter("give names or a selector (-l), not both", param_hint="-l")
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> tuple[list[str], list[errors.DoraError]]:
        objs: list[object_pb2.Object] = []
        missing: list[errors.DoraError] = []
        if wanted:
            for name in wanted:
                try:
                    objs.append(await s.get(found_kind, name))
                except errors.NotFound as exc:
                    missing.append(exc)
        else:
            zone, workspace = s.scope(found_kind, everywhere=all_workspaces)
            objs, _ = await s.client.list(found_kind.name, zone=zone, workspace=workspace,
                                          label_selector=selector)
        now = dt.datetime.now(dt.UTC)
        texts = []
        for obj in objs:
            # A part the caller may not read is left out and said so: describe never
            # fails as a whole for it (a user of a role without ``Event`` still sees
            # their workload).
            omitted: list[str] = []
            containers = await _readable(_containers_of(s, obj), "Containers", omitted)
            events = await _readable(_events_of(s, obj, containers or []), "Events", omitted)
            texts.append(render(obj, now=now, containers=containers, events=events,
                                omitted=omitted))
        return texts, missing

    texts, missing = session.run(connection, work)
    sys.stdout.write("\n".join(texts))
    sys.stdout.flush()
    for error in missing:
        typer.echo(printers.error_text(error), err=True)
    if missing:
        raise typer.Exit(1)
    if not texts:
        typer.echo(f"No {found_kind.plural} found.", err=True)


async def _readable(part: Awaitable[list[object_pb2.Object] | None], name: str,
                    omitted: list[str]) -> list[object_pb2.Object] | None:
    """``part``, or None (noted in ``omitted``) when the caller may not read it."""
    try:
        return await part
    except errors.Forbidden as exc:
        omitted.append(f"{name}: {exc.message}")
        return None


async def _containers_of(s: session.Session,
                         obj: object_pb2.Object) -> list[object_pb2.Object] | None:
    """The containers a Workload owns or a Node runs; None for other kinds."""
    meta = obj.metadata
    if obj.kind == "Workload":
        items, _ = await s.client.list("Container", zone=meta.zone, workspace=meta.workspace)
        return [c for c in items if any(o.uid == meta.uid for o in c.metadata.owner_references)]
    if obj.kind == "Node":
        items, _ = await s.client.list("Container", zone=meta.zone)
        return [c for c in items if columns.container_node(c) == meta.name]
    if obj.kind == "Task":
        items, _ = await s.client.list("Container", zone=meta.zone, workspace=meta.workspace,
                                       label_selector=f"{tasks.TASK_LABEL}={meta.name}")
        return [c for c in items if any(o.uid == meta.uid for o in c.metadata.owner_references)]
    return None


async def _events_of(s: session.Session, obj: object_pb2.Object,
                     containers: Sequence[object_pb2.Object]) -> list[object_pb2.Object] | None:
    """The Events about ``obj`` (and, for a Workload, about its containers), oldest first;
    None where there are none to have (objects without a workspace get no Event)."""
    meta = obj.metadata
    if not meta.workspace or obj.kind == "Event":
        return None
    items, _ = await s.client.list("Event", zone=meta.zone, workspace=meta.workspace)
    about = {meta.uid} | {c.metadata.uid for c in containers}
    found = [e for e in items if e.event.spec.involved_object.uid in about or (
        not e.event.spec.involved_object.uid
        and e.event.spec.involved_object.kind == obj.kind
        and e.event.spec.involved_object.name == meta.name)]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda e: columns.event_last_seen(e) or epoch)


def render(obj: object_pb2.Object, *, now: dt.datetime,
           containers: Sequence[object_pb2.Object] | None = None,
           events: Sequence[object_pb2.Object] | None = None,
           omitted: Sequence[str] = ()) -> str:
    meta = obj.metadata
    kind = kinds.get(obj.kind)
    lines: list[str] = []

    def field(label: str, value: str) -> None:
        lines.append(f"{label + ':':<{LABEL_WIDTH}}{value}")

    field("Name", meta.name)
    field("Kind", obj.kind)
    if kind.zoned:
        field("Zone", meta.zone)
    if kind.workspaced:
        field("Workspace", meta.workspace)
    _mapping(lines, "Labels", dict(meta.labels))
    _mapping(lines, "Annotations", dict(meta.annotations))
    field("UID", meta.uid)
    field("Resource Version", str(meta.resource_version))
    field("Generation", str(meta.generation))
    field("Created", _time(humanize.when(meta, "creation_timestamp"), now))
    if meta.HasField("deletion_timestamp"):
        field("Deleting since", _time(humanize.when(meta, "deletion_timestamp"), now))
    for owner in meta.owner_references:
        field("Owned by", f"{owner.kind.lower()}/{owner.name}")
    if meta.finalizers:
        field("Finalizers", ", ".join(meta.finalizers))
    data = codec.to_dict(obj)
    status = dict(data.get("status") or {})
    conditions = list(getattr(getattr(_body(obj), "status", None), "conditions", []))
    status.pop("conditions", None)
    if obj.kind == "Node":
        status.pop("gpus", None)
    if obj.kind == "Task":  # per-job and packed: the Jobs table below says it for people
        for packed in ("files", "jobs", "attempts", "failures"):
            status.pop(packed, None)
    _block(lines, "Spec", data.get("spec"))
    if kind.has_status:
        _block(lines, "Status", status)
    if conditions:
        lines.append("Conditions:")
        rows = [[c.type, c.status, c.reason or "", c.message or "",
                 humanize.age(humanize.when(c, "last_transition_time"), now=now)]
                for c in conditions]
        lines.extend(_indented_table(["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"], rows))
    if obj.kind == "Node" and obj.node.status.gpus:
        lines.append("GPUs:")
        rows = [[str(g.index), g.product_name, humanize.size(g.memory_total_bytes),
                 g.container or "", g.uuid] for g in obj.node.status.gpus]
        lines.extend(_indented_table(["INDEX", "PRODUCT", "MEMORY", "CONTAINER", "UUID"], rows))
    if obj.kind == "Task":
        lines.extend(task_command.job_lines(obj, containers or [], now=now))
    elif containers is not None:
        _containers(lines, obj, containers, now)
    if events is not None:
        _events(lines, obj, events, now)
    for note in omitted:
        lines.append(f"{'Not shown:':<{LABEL_WIDTH}}{note}")
    return "\n".join(lines) + "\n"


def _body(obj: object_pb2.Object) -> Any:
    return getattr(obj, kinds.get(obj.kind).field)


def _containers(lines: list[str], owner: object_pb2.Object,
                containers: Sequence[object_pb2.Object], now: dt.datetime) -> None:
    if not containers:
        lines.append(f"{'Containers:':<{LABEL_WIDTH}}<none>")
        return
    lines.append("Containers:")
    cols = [c for c in columns.columns("Container") if c.header != "NODE" or owner.kind != "Node"]
    rows = [columns.row(c, cols, now=now) for c in containers]
    lines.extend(_indented_table([c.header for c in cols], rows))


def _events(lines: list[str], about: object_pb2.Object, events: Sequence[object_pb2.Object],
            now: dt.datetime) -> None:
    if not events:
        lines.append(f"{'Events:':<{LABEL_WIDTH}}<none>")
        return
    lines.append("Events:")
    rows = []
    for event in events:
        spec = event.event.spec
        age = humanize.age(columns.event_last_seen(event), now=now)
        if spec.count > 1:
            first = humanize.age(humanize.when(spec, "first_timestamp"), now=now)
            age = f"{age} (x{spec.count} over {first})"
        involved = spec.involved_object
        message = spec.message
        if involved.uid and involved.uid != about.metadata.uid:
            message = f"{columns.event_object(event)}: {message}"
        rows.append([spec.type, spec.reason, age, spec.source, message])
    lines.extend(_indented_table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows))


def _mapping(lines: list[str], label: str, values: dict[str, str]) -> None:
    if not values:
        lines.append(f"{label + ':':<{LABEL_WIDTH}}<none>")
        return
    for index, (key, value) in enumerate(sorted(values.items())):
        head = f"{label}:" if index == 0 else ""
        lines.append(f"{head:<{LABEL_WIDTH}}{key}={value}")


def _block(lines: list[str], label: str, data: Any) -> None:
    if not data:
        lines.append(f"{label + ':':<{LABEL_WIDTH}}<none>")
        return
    lines.append(f"{label}:")
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    lines.extend("  " + line for line in text.rstrip("\n").splitlines())


def _indented_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    text = printers.plain_table(headers, [[c or "<none>" for c in r] for r in rows])
    return ["  " + line for line in text.rstrip("\n").splitlines()]


def _time(at: dt.datetime | None, now: dt.datetime) -> str:
    if at is None:
        return "<unknown>"
    return f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({humanize.duration(now - at)} ago)"
