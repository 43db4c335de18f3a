"""``doractl get queue``: the containers waiting for a place, best first, and why.

A waiting container is one with no node yet. The list is in the order the
scheduler's queue ranks it as far as the client can tell: higher ``priority``
first, then older; within one priority, fair share (the account with less recent
use goes first) can reorder it, and a container that yielded says so in WHY
(``queued: workspace light's containers ... go first``). WAITING is the reason:
``QuotaExceeded`` (a Quota is full), ``Queued`` (another goes first),
``Unschedulable`` (no node has room), or ``Pending`` (not looked at yet).
"""

from __future__ import annotations

import datetime as dt
import sys

from dora.api import kinds
from dora.api.v1 import object_pb2
from dora.ctl import columns, humanize, printers, profiles, session
from dora.ctl.options import Output

WORDS = ("queue", "queues")


def waiting_reason(container: object_pb2.Object) -> tuple[str, str]:
    """(WAITING, WHY) of a container without a node."""
    status = container.container.status
    scheduled = next((c for c in status.conditions if c.type == "Scheduled"), None)
    if scheduled is not None and scheduled.status == "False":
        return scheduled.reason, scheduled.message
    return status.reason or "Pending", ""


def ordered(items: list[object_pb2.Object]) -> list[object_pb2.Object]:
    waiting = [c for c in items if not c.container.spec.node_name
               and not c.metadata.HasField("deletion_timestamp")]
    return sorted(waiting, key=lambda c: (-c.container.spec.template.priority,
                                          c.metadata.creation_timestamp.ToNanoseconds(),
                                          c.metadata.name))


def rows(items: list[object_pb2.Object], *, now: dt.datetime,
         wide: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["#", "NAME", "WORKSPACE", "PRIORITY", "WANTS", "WAITING", "AGE"] + (
        ["WHY"] if wide else [])
    table = []
    for position, container in enumerate(ordered(items), start=1):
        waiting, why = waiting_reason(container)
        table.append([str(position), container.metadata.name, container.metadata.workspace,
                      str(container.container.spec.template.priority),
                      columns.resources(container.container.spec.template), waiting,
                      humanize.age(container.metadata.creation_timestamp.ToDatetime(dt.UTC),
                                   now=now)] + ([why] if wide else []))
    return headers, table


def show(connection: profiles.Connection, output: Output, *, everywhere: bool,
         show_headers: bool) -> None:
    kind = kinds.get("Container")

    async def fetch(s: session.Session) -> list[object_pb2.Object]:
        zone, workspace = s.scope(kind, everywhere=everywhere)
        items, _ = await s.client.list("Container", zone=zone, workspace=workspace)
        return items

    items = session.run(connection, fetch)
    headers, table = rows(items, now=dt.datetime.now(dt.UTC), wide=output is Output.wide)
    if not table:
        print("No containers are waiting.", file=sys.stderr)
        return
    printers.print_table(headers, table, show_headers=show_headers)
