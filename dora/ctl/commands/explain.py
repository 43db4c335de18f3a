"""``doractl explain KIND[.field.path]``: what a kind or a field is, as kubectl explain.

The text comes from the protos' comments (``dora.ctl.explain``); nothing is asked
of the apiserver, so it works without a cluster. ``--recursive`` lists the fields
without their descriptions.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dora.api import errors
from dora.ctl.options import command


def register(app: typer.Typer) -> None:
    command(app, "explain")(explain)


def explain(
    target: Annotated[str, typer.Argument(
        metavar="KIND[.FIELD...]", show_default=False,
        help="A kind (workload, wk, nodes...) and a field path as in YAML: "
             "workload.spec.replica, node.status.gpus.")],
    recursive: Annotated[bool, typer.Option(
        "--recursive", help="List the fields' names and types only.")] = False,
) -> None:
    """Describe a kind or one of its fields: type, documentation and sub-fields."""
    from dora.ctl import explain as docs

    try:
        text = docs.explain(target).text(recursive=recursive)
    except errors.Invalid as exc:
        raise typer.BadParameter(exc.message, param_hint="KIND[.FIELD...]") from None
    typer.echo(text)
