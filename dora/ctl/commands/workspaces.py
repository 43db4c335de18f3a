"""``doractl clone workspace SRC DST``: the tutorial's "clone your workspace".

The server copies the definitions (workloads stopped, volumes as definitions) and
never the containers; this prints what it copied.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dora.ctl import session
from dora.ctl.options import command, settings_of

app = typer.Typer(help="Copy things: `clone workspace SRC DST`.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="clone")


@command(app, "workspace")
def clone_workspace(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SRC", help="The workspace to copy.",
                                          show_default=False)],
    destination: Annotated[str, typer.Argument(
        metavar="DST", help="The new workspace (made if missing).", show_default=False)],
    all_zones: Annotated[bool, typer.Option(
        "--all-zones", "-A", help="Copy from every zone, not just the current one.")] = False,
) -> None:
    """Copy a workspace's workloads (stopped) and volumes into another workspace."""
    connection = settings_of(ctx).connection()
    zone = "" if all_zones else connection.zone

    async def work(s: session.Session) -> list[str]:
        return await s.client.clone_workspace(source, destination, zone=zone)

    copied = session.run(connection, work)
    for line in copied:
        typer.echo(f"{line} created")
    typer.echo(f"workspace/{destination}: {len(copied)} object(s) copied from {source}")
