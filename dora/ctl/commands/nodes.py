"""``doractl cordon``, ``uncordon`` and ``drain``: take a node out of scheduling
(and empty it) for maintenance, kubectl's way; ``doractl node fence|unfence``:
declare a node dead, or alive again.

Cordoning sets the Node's ``spec.schedulingDisabled``: the scheduler places no new
container there, and those running stay. ``drain`` cordons, then deletes the
node's Containers (``dora.io/node=NODE``, in every workspace of the node's zone):
their workloads' controllers make replacements, which the scheduler places on
other nodes. It waits, up to ``--timeout``, until the deleted containers are
gone (the agent stopped them); ``uncordon`` lets the scheduler use the node again.

Fencing sets ``spec.fenced``: the administrator says the machine is dead (or must
be treated so). Its containers are replaced elsewhere at once, without the wait
that otherwise guards against two copies running (``config.replacement``), and its
agent, should it come back, stops everything and runs nothing until ``unfence``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from dora.api import conventions, kinds, waiting
from dora.api.client import ApplyResult
from dora.ctl import session
from dora.ctl.commands.wait import parse_timeout
from dora.ctl.options import command, complete_name, settings_of

NODE = kinds.get("Node")

def complete_node(ctx: typer.Context, incomplete: str) -> list[str]:
    """Node names for NODE (there is no KIND on these lines to complete from)."""
    ctx.params.setdefault("kind", "node")
    return complete_name(ctx, incomplete)


NodeArg = Annotated[str, typer.Argument(
    metavar="NODE", help="The node's name (or node/NAME).", show_default=False,
    autocompletion=complete_node,
)]


def register(app: typer.Typer) -> None:
    command(app, "cordon")(cordon)
    command(app, "uncordon")(uncordon)
    command(app, "drain")(drain)
    group = typer.Typer(name="node", help="Declare a node dead (fence) or alive (unfence).",
                        no_args_is_help=True)
    command(group, "fence")(fence)
    command(group, "unfence")(unfence)
    app.add_typer(group)


def _name(word: str) -> str:
    kind, slash, name = word.partition("/")
    if slash and kind.lower() not in NODE.names():
        raise typer.BadParameter(f"{word!r}: only nodes are cordoned and drained",
                                 param_hint="NODE")
    return name if slash else word


async def set_cordoned(s: session.Session, name: str, disabled: bool) -> bool:
    """Set the node's ``schedulingDisabled``; whether it changed."""
    return await set_flag(s, name, "scheduling_disabled", disabled)


async def set_flag(s: session.Session, name: str, field: str, value: bool) -> bool:
    """Set the boolean ``field`` of the node's spec; whether it changed."""

    async def attempt() -> bool:
        node = await s.get(NODE, name)
        if getattr(node.node.spec, field) == value:
            return False
        setattr(node.node.spec, field, value)
        node.node.ClearField("status")
        _, result = await s.client.apply(node)
        return bool(result != ApplyResult.UNCHANGED)

    return await session.retry_on_conflict(f"node/{name}", attempt)


def cordon(ctx: typer.Context, node: NodeArg) -> None:
    """Mark a node unschedulable: new containers go elsewhere, running ones stay."""
    name = _name(node)
    changed = session.run(settings_of(ctx).connection(),
                          lambda s: set_cordoned(s, name, True))
    typer.echo(f"node/{name} {'cordoned' if changed else 'already cordoned'}")


def uncordon(ctx: typer.Context, node: NodeArg) -> None:
    """Mark a node schedulable again."""
    name = _name(node)
    changed = session.run(settings_of(ctx).connection(),
                          lambda s: set_cordoned(s, name, False))
    typer.echo(f"node/{name} {'uncordoned' if changed else 'already uncordoned'}")


def drain(
    ctx: typer.Context,
    node: NodeArg,
    timeout: Annotated[str, typer.Option(
        "--timeout", metavar="DURATION",
        help="How long to wait for the node's containers to be gone: 30s, 5m.")] = "5m",
) -> None:
    """Cordon a node and delete its containers, so their workloads run them elsewhere."""
    name = _name(node)
    limit = parse_timeout(timeout)

    async def work(s: session.Session) -> None:
        if await set_cordoned(s, name, True):
            typer.echo(f"node/{name} cordoned")
        zone = (await s.get(NODE, name)).metadata.zone
        items, _ = await s.client.list("Container", zone=zone,
                                       label_selector=f"{conventions.NODE_LABEL}={name}")
        evicted = []
        for item in items:
            meta = item.metadata
            if meta.HasField("deletion_timestamp"):
                evicted.append(item)
                continue
            evicted.append(await s.client.delete("Container", meta.name, zone=meta.zone,
                                                 workspace=meta.workspace))
            typer.echo(f"container/{meta.name} evicted")
        gone = waiting.Condition("delete")
        await asyncio.gather(*(
            waiting.wait(s.client, "Container", c.metadata.name, gone, zone=c.metadata.zone,
                         workspace=c.metadata.workspace, uid=c.metadata.uid, timeout=limit)
            for c in evicted))
        typer.echo(f"node/{name} drained")

    session.run(settings_of(ctx).connection(), work)


def fence(ctx: typer.Context, node: NodeArg) -> None:
    """Declare a node dead: its containers are replaced elsewhere now, and its agent,
    should it come back, stops them and runs nothing until `node unfence`."""
    name = _name(node)
    changed = session.run(settings_of(ctx).connection(),
                          lambda s: set_flag(s, name, "fenced", True))
    typer.echo(f"node/{name} {'fenced' if changed else 'already fenced'}")


def unfence(ctx: typer.Context, node: NodeArg) -> None:
    """Let a fenced node run containers again."""
    name = _name(node)
    changed = session.run(settings_of(ctx).connection(),
                          lambda s: set_flag(s, name, "fenced", False))
    typer.echo(f"node/{name} {'unfenced' if changed else 'not fenced'}")
