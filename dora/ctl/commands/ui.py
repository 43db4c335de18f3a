"""``doractl ui``: the desktop app, the web app on this machine signed in from the
profiles (``dora-desktop``, in ``dora.web.desktop``).

The command line and the web gateway are independent components (neither imports
the other), so ``doractl ui`` hands over to the desktop server as a program: it
replaces this process with it, so Ctrl-C reaches the server directly and stops it
and every sync. It needs the gateway's dependencies (the ``[server]`` extra).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from dora import daemons
from dora.ctl.options import command, settings_of


def register(app: typer.Typer) -> None:
    command(app, "ui")(ui)


def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(
        "--port", help="The local port (default: a free one).", min=0, max=65535)] = 0,
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Print the address; do not open a browser.")] = False,
) -> None:
    """Open Dora in the browser, served on 127.0.0.1 and signed in from your profiles;
    keeps the workloads' sync folders live. Ctrl-C stops it."""
    lacking = daemons.missing("web")
    if lacking:
        typer.echo(f"doractl ui needs the web app's server side (no module "
                   f"{', '.join(lacking)}): {daemons.EXTRA}", err=True)
        raise typer.Exit(1)
    argv = [sys.executable, "-m", "dora.web.desktop", "--port", str(port)]
    context = settings_of(ctx).context
    if context:
        argv += ["--context", context]
    if no_browser:
        argv.append("--no-browser")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
