"""``doractl get``: list objects or show some by name, once or as they change (``-w``).

``get`` reads in the connection's zone and workspace (the kind's scopes only),
in every zone and workspace with ``-A``, and in every one nobody named. With
names it reads each and reports those that are missing (exit 1) after printing
the others, like kubectl.

``--watch`` opens one watch from version 0: the server sends the current objects,
a bookmark, then changes, so the first table and the changes after it have no gap
between them. Rows are printed as they come, aligned as they go. A watch the
server can no longer resume (compacted) starts over from the current state.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer

from dora.api import codec, errors, kinds
from dora.api.client import WatchEvent
from dora.api.v1 import object_pb2
from dora.ctl import columns, jsonpath, printers, profiles, session
from dora.ctl.commands import devices, queue
from dora.ctl.options import (
    Format,
    FormatOpt,
    KindArg,
    Output,
    SelectorOpt,
    command,
    complete_name,
    kind_of,
    parse_format,
    settings_of,
)

NamesArg = Annotated[list[str] | None, typer.Argument(
    metavar="NAME", help="Names of objects to show; default: all.", show_default=False,
    autocompletion=complete_name,
)]
AllOpt = Annotated[bool, typer.Option(
    "--all-workspaces", "-A", help="Every zone and workspace, not the context's.",
)]
NoHeadersOpt = Annotated[bool, typer.Option("--no-headers", help="Print tables without headers.")]

EVENT_WORDS = {WatchEvent.ADDED: "ADDED", WatchEvent.MODIFIED: "MODIFIED",
               WatchEvent.DELETED: "DELETED"}


def register(app: typer.Typer) -> None:
    command(app, "get")(get)


def split_kind(word: str, names: list[str] | None) -> tuple[kinds.Kind, list[str]]:
    """``wk a b`` or kubectl's ``wk/a b``: the kind and the names."""
    kind_word, slash, first = word.partition("/")
    found = [first] if slash and first else []
    return kind_of(kind_word), [*found, *(names or [])]


def get(
    ctx: typer.Context,
    kind: KindArg,
    names: NamesArg = None,
    output_text: FormatOpt = "table",
    selector: SelectorOpt = "",
    all_workspaces: AllOpt = False,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="After listing, print changes as they happen (Ctrl-C stops).",
    )] = False,
    watch_only: Annotated[bool, typer.Option(
        "--watch-only", help="Print changes only, not the current objects first.",
    )] = False,
    no_headers: NoHeadersOpt = False,
    output_watch_events: Annotated[bool, typer.Option(
        "--output-watch-events", help="With --watch, add an EVENT column.",
    )] = False,
    max_events: Annotated[int, typer.Option("--max-events", hidden=True, min=0)] = 0,
    sort_by: Annotated[str, typer.Option(
        "--sort-by", metavar="JSONPATH", show_default=False,
        help="Sort by a field: --sort-by=.metadata.name, '{.status.phase}'.")] = "",
    show_labels: Annotated[bool, typer.Option(
        "--show-labels", help="Add a LABELS column to the table.")] = False,
    label_columns: Annotated[list[str] | None, typer.Option(
        "--label-columns", "-L", metavar="KEY", show_default=False,
        help="Add a column with the value of label KEY (repeatable, or KEY1,KEY2).")] = None,
) -> None:
    """Show objects of KIND: all of them, or those named.

    KIND is a plural, singular or short name: workloads, wk, containers, c, nodes,
    volumes, vol, zones, z, workspaces, ws, resourcecredits, rc, usercredits, uc...;
    several kinds are comma-separated (wk,c). ``gpus`` and ``cpus`` list the devices
    of the zone's nodes (-o wide adds memory, UUID and why a GPU is unhealthy);
    ``queue`` the containers waiting for a place, best first (-o wide: why).
    """
    fmt = parse_format(output_text)
    output = fmt.output
    extra = extra_columns(show_labels, label_columns or [])
    order = _sort_path(sort_by)
    if fmt.template_kind and (watch or watch_only or kind.lower() in devices.WORDS):
        raise typer.BadParameter(f"{fmt.template_kind} prints a list, not --watch or devices",
                                 param_hint="--output")
    if kind.lower() in queue.WORDS:
        if names or selector or watch or watch_only or fmt.template_kind:
            raise typer.BadParameter(f"{kind} takes no names, selector, --watch or template",
                                     param_hint="KIND")
        queue.show(settings_of(ctx).connection(), output, everywhere=all_workspaces,
                   show_headers=not no_headers)
        return
    if kind.lower() in devices.WORDS:
        if names or selector or watch or watch_only:
            raise typer.BadParameter(f"{kind} takes no names, selector or --watch",
                                     param_hint="KIND")
        devices.show(settings_of(ctx).connection(), kind, output,
                     show_headers=not no_headers)
        return
    if "," in kind:
        if names or "/" in kind:
            raise typer.BadParameter("names go with one kind, not a list of kinds",
                                     param_hint="KIND")
        if watch or watch_only:
            raise typer.BadParameter("--watch follows one kind", param_hint="KIND")
        found_kinds = [kind_of(word) for word in kind.split(",") if word]
        wanted: list[str] = []
    else:
        found_kind, wanted = split_kind(kind, names)
        found_kinds = [found_kind]
    if selector and wanted:
        raise typer.BadParameter("give names or a selector (-l), not both", param_hint="-l")
    connection = settings_of(ctx).connection()
    if watch or watch_only:
        watcher = Watcher(kind=found_kinds[0], names=set(wanted), selector=selector,
                          everywhere=all_workspaces, output=output,
                          show_headers=not no_headers, watch_only=watch_only,
                          events_column=output_watch_events, max_events=max_events,
                          extra=extra)
        session.run(connection, watcher.run)
        return

    async def fetch(s: session.Session) -> list[tuple[kinds.Kind, Found]]:
        return [(k, await _fetch(s, k, wanted, selector=selector, everywhere=all_workspaces))
                for k in found_kinds]

    results = session.run(connection, fetch)
    if order is not None:
        key = jsonpath.sort_key(order)
        results = [(k, (sorted(objs, key=lambda o: key(codec.to_dict(o))), errs))
                   for k, (objs, errs) in results]
    single = len(found_kinds) == 1 and len(wanted) == 1 and not all_workspaces
    tabular = output in (Output.table, Output.wide) and not fmt.template_kind
    if fmt.template_kind:
        everything = [o for _, (objs, _) in results for o in objs]
        _print_template(fmt, everything, single=single, show_headers=not no_headers)
    elif tabular:
        printed = False
        now = dt.datetime.now(dt.UTC)
        for found_kind, (objs, _) in results:
            if objs:
                if printed:
                    sys.stdout.write("\n")
                cols = columns.columns(found_kind.name, wide=output is Output.wide)
                cols = [*cols, *(c for c in extra if c not in cols)]
                printers.print_table([c.header for c in cols],
                                     printers.table_rows(objs, cols, now=now),
                                     show_headers=not no_headers)
                printed = True
    else:
        everything = [o for _, (objs, _) in results for o in objs]
        sys.stdout.write(printers.serialize(everything, output, single=single))
    missing = [e for _, (_, errs) in results for e in errs]
    if tabular and not missing and not any(objs for _, (objs, _) in results):
        plural = ",".join(k.plural for k in found_kinds)
        typer.echo(_nothing_found(found_kinds, plural, connection, everywhere=all_workspaces),
                   err=True)
    if missing:
        sys.stdout.flush()
        for error in missing:
            typer.echo(printers.error_text(error), err=True)
        raise typer.Exit(1)


Found = tuple[list[object_pb2.Object], list[errors.DoraError]]


def extra_columns(show_labels: bool, keys: list[str]) -> list[columns.Column]:
    """``--show-labels`` and ``-L KEY`` columns: all labels, and one label's value each
    (headed by the key's last part, upper-cased, as kubectl does)."""
    extra = [columns.Column(key.rsplit("/", 1)[-1].upper(), _label_cell(key))
             for word in keys for key in word.split(",") if key]
    if show_labels:
        extra.append(columns.LABELS)
    return extra


def _label_cell(key: str) -> columns.Cell:
    def cell(obj: object_pb2.Object, now: dt.datetime) -> str:
        return obj.metadata.labels.get(key, "")

    return cell


def _sort_path(text: str) -> jsonpath.Path | None:
    if not text:
        return None
    try:
        return jsonpath.sort_path(text)
    except errors.Invalid as exc:
        raise typer.BadParameter(exc.message, param_hint="--sort-by") from None


def _print_template(fmt: Format, objs: list[object_pb2.Object], *, single: bool,
                    show_headers: bool) -> None:
    """``-o jsonpath=`` over what ``-o json`` prints; ``-o custom-columns=`` per object."""
    try:
        if fmt.template_kind == "jsonpath":
            nodes = jsonpath.parse(fmt.template)
            data = (codec.to_dict(objs[0]) if single and len(objs) == 1 else
                    {"apiVersion": "v1", "kind": "List",
                     "items": [codec.to_dict(o) for o in objs]})
            sys.stdout.write(jsonpath.render(nodes, data))
            return
        cols = jsonpath.parse_columns(fmt.template)
    except errors.Invalid as exc:
        raise typer.BadParameter(exc.message, param_hint="--output") from None
    rows = []
    for obj in objs:
        data = codec.to_dict(obj)
        rows.append([jsonpath.cell(c, data) for c in cols])
    printers.print_table([c.header for c in cols], rows, show_headers=show_headers)


async def _fetch(s: session.Session, kind: kinds.Kind, wanted: list[str], *, selector: str,
                 everywhere: bool) -> Found:
    """The objects of ``kind`` (those ``wanted``, when named) and the named ones missing."""
    if wanted and not everywhere:
        objs: list[object_pb2.Object] = []
        missing: list[errors.DoraError] = []
        for name in wanted:
            try:
                objs.append(await s.get(kind, name))
            except errors.NotFound as exc:
                missing.append(exc)
        return objs, missing
    zone, workspace = s.scope(kind, everywhere=everywhere)
    items, _ = await s.client.list(kind.name, zone=zone, workspace=workspace,
                                   label_selector=selector)
    if kind.name == "Event":  # a story reads oldest first
        epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
        items.sort(key=lambda e: columns.event_last_seen(e) or epoch)
    if not wanted:
        return items, []
    objs = [o for o in items if o.metadata.name in wanted]
    present = {o.metadata.name for o in objs}
    return objs, [errors.NotFound(f"{kind.name.lower()}/{n} not found")
                  for n in wanted if n not in present]


def _nothing_found(found: list[kinds.Kind], plural: str, connection: profiles.Connection, *,
                   everywhere: bool) -> str:
    zone = connection.zone if any(k.zoned for k in found) and not everywhere else ""
    workspace = (connection.workspace if any(k.workspaced for k in found) and not everywhere
                 else "")
    scope = "/".join(p for p in (zone, workspace) if p)
    return f"No {plural} found" + (f" in {scope}." if scope else ".")


def _sort_key(obj: object_pb2.Object) -> tuple[str, str, str]:
    return obj.metadata.zone, obj.metadata.workspace, obj.metadata.name


class Watcher:
    """``get --watch``: the current objects (unless watch-only), then every change."""

    def __init__(self, *, kind: kinds.Kind, names: set[str], selector: str, everywhere: bool,
                 output: Output, show_headers: bool, watch_only: bool, events_column: bool,
                 max_events: int, extra: list[columns.Column] | None = None) -> None:
        self.kind = kind
        self.names = names
        self.selector = selector
        self.everywhere = everywhere
        self.output = output
        self.watch_only = watch_only
        self.events_column = events_column
        self.max_events = max_events
        self.columns = columns.columns(kind.name, wide=output is Output.wide)
        self.columns += [c for c in extra or [] if c not in self.columns]
        headers = [c.header for c in self.columns]
        self.stream = printers.RowStream(
            (["EVENT"] if events_column else []) + headers, show_headers=show_headers
        )
        self.printed = 0

    async def run(self, s: session.Session) -> None:
        zone, workspace = s.scope(self.kind, everywhere=self.everywhere)
        while True:
            try:
                await self._follow(s, zone, workspace)
                return
            except errors.Gone:
                typer.echo("the watch fell too far behind; listing again", err=True)

    async def _follow(self, s: session.Session, zone: str, workspace: str) -> None:
        initial: list[WatchEvent] = []
        synced = False
        async for event in s.client.watch(self.kind.name, zone=zone, workspace=workspace,
                                          label_selector=self.selector, bookmarks=True):
            if event.type == WatchEvent.BOOKMARK:
                if not synced:
                    synced = True
                    if not self.watch_only:
                        self._emit(sorted(initial, key=lambda e: _sort_key(e.object)))
                continue
            if self.names and event.object.metadata.name not in self.names:
                continue
            if not synced:
                initial.append(event)
                continue
            self._emit([event])
            self.printed += 1
            if self.max_events and self.printed >= self.max_events:
                return

    def _emit(self, events: list[WatchEvent]) -> None:
        if self.output in (Output.table, Output.wide):
            now = dt.datetime.now(dt.UTC)
            rows = [self._row(e, now) for e in events]
            self.stream.start(rows)
            return
        for event in events:
            text = printers.serialize([event.object], self.output, single=True)
            if self.output is Output.yaml:
                text = "---\n" + text
            sys.stdout.write(text)
        sys.stdout.flush()

    def _row(self, event: WatchEvent, now: dt.datetime) -> list[str]:
        cells = columns.row(event.object, self.columns, now=now)
        if self.events_column:
            cells.insert(0, EVENT_WORDS.get(event.type, "?"))
        return cells
