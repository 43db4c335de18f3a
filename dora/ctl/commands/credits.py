"""``doractl credits``: the tutorial's used-credits indicator, one line per zone.

It reads the ``Usercredit`` objects the credit controller keeps (one per user and
zone, named after the user) and prints, for the caller (``whoami``) or the user
named, what was used of the weekly budget, what is left, what the running
containers cost per hour right now, when the budget runs out at that rate, and
when the week restarts. A zone where the user has no budget and nothing was
charged has no Usercredit and no line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated

import typer

from dora.api import errors
from dora.api.v1 import object_pb2
from dora.ctl import columns, humanize, printers, session
from dora.ctl.options import Output, OutputOpt, command, settings_of

HEADERS = ["ZONE", "USED / WEEKLY", "REMAINING", "RUNNING NOW", "RUNS OUT", "WEEK RESTARTS",
           "STATE"]


def register(app: typer.Typer) -> None:
    command(app, "credits")(credits)


def rows(usercredits: Sequence[object_pb2.Object], *, now: dt.datetime) -> list[list[str]]:
    """The indicator's rows for ``usercredits`` (one user's), by zone."""
    result = []
    for obj in sorted(usercredits, key=lambda o: o.metadata.zone):
        status = obj.usercredit.status
        unit = status.price_unit
        used = columns.credit_amount(status.used, unit)
        if status.unlimited:
            budget, remaining = f"{used} / -", "-"
        else:
            budget = f"{used} / {columns.credit_amount(status.weekly, unit)}"
            remaining = columns.credit_amount(status.remaining, unit)
        rate = status.running_per_hour
        runs_out = "-"
        if rate > 0 and not status.unlimited and not status.exhausted:
            runs_out = "in " + humanize.duration(
                dt.timedelta(hours=status.remaining / rate))
        restarts = humanize.when(status, "week_end")
        result.append([
            obj.metadata.zone,
            budget,
            remaining,
            f"{columns.credit_amount(rate, unit)}/h",
            runs_out,
            _restarts(restarts, now=now),
            columns.credit_state(status),
        ])
    return result


def _restarts(at: dt.datetime | None, *, now: dt.datetime) -> str:
    if at is None:
        return "-"
    text = f"{at:%a %Y-%m-%d %H:%M} UTC"
    return f"{text} (in {humanize.duration(at - now)})" if at > now else text


def credits(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Argument(
        metavar="USER", help="Whose credits (default: you).", show_default=False)] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Credits used this week, per zone: used / weekly, and what runs now costs per hour."""
    settings = settings_of(ctx)
    connection = settings.connection()
    # Every zone, unless -z names one (the context's zone would hide the others).
    zone = settings.zone or ""

    async def work(s: session.Session) -> tuple[str, list[object_pb2.Object]]:
        name = user or (await s.client.whoami()).user
        items, _ = await s.client.list("Usercredit", zone=zone)
        mine = [o for o in items if o.metadata.name == name]
        if not mine and connection.zone:
            # Permission to read one's own Usercredit only (the seeds' GetOne).
            try:
                mine = [await s.client.get("Usercredit", name, zone=zone or connection.zone)]
            except (errors.NotFound, errors.Forbidden):
                mine = []
        return name, mine

    name, mine = session.run(connection, work)
    if output not in (Output.table, Output.wide):
        typer.echo(printers.serialize(mine, output), nl=False)
        return
    if not mine:
        where = f" in zone {zone}" if zone else ""
        typer.echo(f"no credits metered for {name}{where} (no budget and nothing charged "
                   "this week)", err=True)
        return
    typer.echo(f"credits of {name}")
    printers.print_table(HEADERS, rows(mine, now=dt.datetime.now(dt.UTC)))
