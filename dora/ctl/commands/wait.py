"""``doractl wait KIND/NAME --for=...``: block until objects reach a state.

The states are kubectl's: ``--for=phase=Running``, ``--for=state=Completed`` (a
Task's ``status.state``), ``--for=condition=Available``
(``condition=Ready=False`` for another status) and ``--for=delete``; the waiting is
``dora.api.waiting``'s, which the SDK's ``wait`` shares. An object that does not
exist yet is waited for. Past ``--timeout`` the command fails (exit 1) saying
what state the object was in.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from dora.api import errors, kinds, waiting
from dora.ctl import humanize, session
from dora.ctl.options import KindArg, command, complete_name, kind_of, settings_of

NamesArg = Annotated[list[str] | None, typer.Argument(
    metavar="NAME", help="The objects' names (or KIND/NAME).", show_default=False,
    autocompletion=complete_name,
)]
ForOpt = Annotated[str, typer.Option(
    "--for", metavar="STATE", show_default=False,
    help="phase=PHASE, state=STATE (a Task's), condition=TYPE[=STATUS] or delete.",
)]
TimeoutOpt = Annotated[str, typer.Option(
    "--timeout", metavar="DURATION", help="How long to wait in all: 30s, 5m, 1h.",
)]


def register(app: typer.Typer) -> None:
    command(app, "wait")(wait)


def targets(word: str, names: list[str] | None) -> tuple[kinds.Kind, list[str]]:
    """``wk a b`` or ``wk/a b``: the kind and the names (at least one)."""
    kind_word, slash, first = word.partition("/")
    wanted = [*([first] if slash and first else []), *(names or [])]
    if not wanted:
        raise typer.BadParameter("name the objects (KIND NAME or KIND/NAME)", param_hint="NAME")
    return kind_of(kind_word), wanted


def parse_timeout(text: str) -> float:
    try:
        return humanize.parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--timeout") from None


def condition_of(kind: kinds.Kind, text: str) -> waiting.Condition:
    try:
        condition = waiting.parse(text)
        waiting.check(kind, condition)
    except errors.Invalid as exc:
        raise typer.BadParameter(exc.message, param_hint="--for") from None
    return condition


def wait(
    ctx: typer.Context,
    kind: KindArg,
    names: NamesArg = None,
    for_: ForOpt = "",
    timeout: TimeoutOpt = "30s",
) -> None:
    """Wait until objects are in a state: `wait container/web-1 --for=phase=Running`,
    `wait wk/web --for=condition=Available`, `wait task/sweep --for=state=Completed`,
    `wait wk/web --for=delete --timeout=2m`."""
    found, wanted = targets(kind, names)
    if not for_:
        raise typer.BadParameter("say what to wait for: --for=phase=Running, "
                                 "--for=state=Completed, --for=condition=Available or "
                                 "--for=delete",
                                 param_hint="--for")
    condition = condition_of(found, for_)
    limit = parse_timeout(timeout)
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> None:
        zone, workspace = s.scope(found)

        async def one(name: str) -> None:
            await waiting.wait(s.client, found.name, name, condition, zone=zone,
                               workspace=workspace, timeout=limit)
            word = "deleted" if condition.what == "delete" else "condition met"
            typer.echo(f"{found.name.lower()}/{name} {word}")

        # Together, as kubectl does: --timeout bounds the whole command.
        await asyncio.gather(*(one(name) for name in wanted))

    session.run(connection, work)
