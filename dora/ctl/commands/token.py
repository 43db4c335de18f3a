"""``doractl token`` and ``doractl whoami``: the credentials of users and nodes.

``token create USER WORKSPACE ID`` is the old CLI's (seed 004: ``dora token
create amedeo.setti amedeo.setti 1``): the token is shown this once only (the
server keeps a hash), alone on stdout so a script can capture it, with a note on
stderr that ``--quiet`` leaves out. The workspace is where the token's requests
land when they name none. ``--node NAME`` makes the token that node agent's
identity: the apiserver lets it act on that Node, its Lease and the Containers
bound to it only (``doractl token create node node node1 --node node1``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from dora.api.v1 import tokens_pb2
from dora.ctl import humanize, printers, session
from dora.ctl.options import command, settings_of

app = typer.Typer(help="Create, list and revoke the tokens users and nodes log in with.",
                  no_args_is_help=True)

UserArg = Annotated[str, typer.Argument(metavar="USER", help="The user.", show_default=False)]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="The token's id, unique per user.",
                                      show_default=False)]


def _ttl(text: str | None) -> int:
    if text is None:
        return 0
    try:
        seconds = humanize.parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from None
    if seconds < 1:
        raise typer.BadParameter("must be at least 1s", param_hint="--ttl")
    return int(seconds)


@command(app, "create")
def create(
    ctx: typer.Context,
    user: UserArg,
    workspace: Annotated[str, typer.Argument(
        metavar="WORKSPACE", help="Where the token's requests go when they name no workspace.",
        show_default=False)],
    token_id: IdArg,
    ttl: Annotated[str | None, typer.Option(
        "--ttl", metavar="DURATION", help="Expire after this long (30m, 24h); default: never.",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print the token alone, without the note on stderr.")] = False,
    node: Annotated[str, typer.Option(
        "--node", metavar="NAME",
        help="Make it the identity of node NAME's agent (it may act on that node only).",
        show_default=False)] = "",
) -> None:
    """Create a token for USER and print it (it is shown only this once)."""
    seconds = _ttl(ttl)
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> tuple[str, tokens_pb2.TokenInfo]:
        return await s.client.create_token(user, workspace, token_id, ttl_seconds=seconds,
                                           node=node)

    token, info = session.run(connection, work)
    if not quiet:
        expires = humanize.when(info, "expires")
        until = f", expires {expires:%Y-%m-%dT%H:%M:%SZ}" if expires else ""
        typer.echo(f"token {info.user}/{info.id} created{until}; it is shown only this once:",
                   err=True)
    typer.echo(token)


@command(app, "ls", hidden=True)
@command(app, "list")
def list_tokens(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(
        metavar="[USER]", help="Whose tokens; default: yours (an administrator's: everyone's).",
        show_default=False)] = "",
) -> None:
    """List tokens (never the tokens themselves: only their ids and dates)."""
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> list[tokens_pb2.TokenInfo]:
        return await s.client.list_tokens(user)

    infos = session.run(connection, work)
    if not infos:
        typer.echo("No tokens found.", err=True)
        return
    now = dt.datetime.now(dt.UTC)

    def expires(info: tokens_pb2.TokenInfo) -> str:
        at = humanize.when(info, "expires")
        if at is None:
            return "never"
        return f"in {humanize.duration(at - now)}" if at > now else "expired"

    rows = [[i.user, i.workspace or "<none>", i.id,
             humanize.age(humanize.when(i, "created"), now=now), expires(i)] for i in infos]
    printers.print_table(["USER", "WORKSPACE", "ID", "AGE", "EXPIRES"], rows)


@command(app, "revoke")
def revoke(ctx: typer.Context, user: UserArg, token_id: IdArg) -> None:
    """Revoke USER's token ID: requests with it are refused from now on."""
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> None:
        await s.client.revoke_token(user, token_id)

    session.run(connection, work)
    typer.echo(f"token {user}/{token_id} revoked")


def whoami(ctx: typer.Context) -> None:
    """Who the server takes you for, and where your requests go by default."""
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> tokens_pb2.WhoAmIResponse:
        return await s.client.whoami()

    me = session.run(connection, work)
    printers.print_table(
        ["USER", "TOKEN", "ZONE", "WORKSPACE", "CONTEXT"],
        [[me.user, me.token_id or "<none>", me.zone or "<none>", me.workspace or "<none>",
          connection.context or "<none>"]],
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="token")
    command(root, "whoami")(whoami)
