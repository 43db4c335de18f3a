"""``doractl version``: the client's version and the apiserver's.

The server's comes with ``WhoAmI`` (any valid token may call it), so no extra
service is needed. ``--client`` asks nothing of the network; a server that cannot
be reached fails the command after the client's line is printed.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
import yaml

import dora
from dora.ctl import session
from dora.ctl.options import command, settings_of


def register(app: typer.Typer) -> None:
    command(app, "version")(version)


def version(
    ctx: typer.Context,
    client_only: Annotated[bool, typer.Option(
        "--client", help="Only the client's version (no server call).")] = False,
    output: Annotated[str, typer.Option(
        "--output", "-o", metavar="yaml|json", help="Print as YAML or JSON.",
        show_default=False)] = "",
) -> None:
    """Print the client's and the server's version."""
    if output not in ("", "yaml", "json"):
        raise typer.BadParameter("use yaml or json", param_hint="--output")
    info: dict[str, str] = {"clientVersion": dora.__version__}
    if not output:
        typer.echo(f"Client Version: {dora.__version__}")
    if not client_only:
        connection = settings_of(ctx).connection()

        async def work(s: session.Session) -> str:
            return (await s.client.whoami()).server_version

        sys.stdout.flush()
        server = session.run(connection, work) or "unknown (an apiserver older than 0.1.0)"
        info["serverVersion"] = server
        info["server"] = connection.endpoint
        if not output:
            typer.echo(f"Server Version: {server} ({connection.endpoint})")
    if output == "json":
        typer.echo(json.dumps(info, indent=2))
    elif output == "yaml":
        typer.echo(yaml.safe_dump(info, sort_keys=False).rstrip("\n"))
