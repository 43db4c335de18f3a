"""``doractl config``: the contexts of the profile file (``~/.dora/config.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from dora.api import errors
from dora.ctl import printers, profiles
from dora.ctl.options import command, complete_context

app = typer.Typer(
    help="Contexts: which apiserver, token, zone and workspace to use "
         "(~/.dora/config.yaml, or $DORA_CONFIG).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The context's name.",
                                        show_default=False, autocompletion=complete_context)]


def _path() -> Path:
    return profiles.default_path()


@command(app, "get-contexts")
def get_contexts() -> None:
    """List the contexts; * marks the current one."""
    found = profiles.load(_path())
    rows = [
        ["*" if name == found.current_context else "", name, ctx.endpoint, ctx.zone,
         ctx.workspace, "token" if ctx.token else "", ctx.ca]
        for name, ctx in sorted(found.contexts.items())
    ]
    headers = ["CURRENT", "NAME", "SERVER", "ZONE", "WORKSPACE", "AUTH", "CA"]
    printers.print_table(headers, [[c or "" for c in r] for r in rows])


@command(app, "current-context")
def current_context() -> None:
    """Print the name of the current context."""
    found = profiles.load(_path())
    if not found.current_context:
        raise errors.NotFound("no current context; set one with `doractl config use-context`")
    typer.echo(found.current_context)


@command(app, "use-context")
def use_context(name: NameArg) -> None:
    """Make NAME the current context."""
    path = _path()
    found = profiles.load(path)
    if name not in found.contexts:
        known = ", ".join(sorted(found.contexts)) or "none"
        raise errors.NotFound(f"context {name!r} does not exist (contexts: {known})")
    found.current_context = name
    profiles.save(found, path)
    typer.echo(f'Switched to context "{name}".')


@command(app, "set-context")
def set_context(
    name: NameArg,
    server: Annotated[str | None, typer.Option(
        "--server", "-s", metavar="ENDPOINT",
        help="HOST:PORT, https://HOST:PORT, or several comma-separated.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="The bearer token.")] = None,
    zone: Annotated[str | None, typer.Option("--zone", "-z", help="The default zone.")] = None,
    workspace: Annotated[str | None, typer.Option(
        "--workspace", "--group", "-g", help="The default workspace.")] = None,
    ca: Annotated[str | None, typer.Option(
        "--ca", metavar="FILE", help="CA bundle (PEM) to verify the apiserver with; "
                                     "implies TLS.")] = None,
    use: Annotated[bool, typer.Option(
        "--use", help="Also make it the current context.")] = False,
) -> None:
    """Create context NAME, or change the fields given of an existing one.

    The first context created becomes the current one.
    """
    path = _path()
    found = profiles.load(path)
    if ca:
        ca_path = Path(ca).expanduser()
        if not ca_path.is_file():
            raise errors.DoraError(f"{ca}: no such file")
        ca = str(ca_path.resolve())
    created = profiles.set_context(found, name, endpoint=server, token=token, zone=zone,
                                   workspace=workspace, ca=ca)
    if use or not found.current_context:
        found.current_context = name
    profiles.save(found, path)
    typer.echo(f'Context "{name}" {"created" if created else "modified"}.')


@command(app, "delete-context")
def delete_context(name: NameArg) -> None:
    """Delete context NAME."""
    path = _path()
    found = profiles.load(path)
    if found.contexts.pop(name, None) is None:
        raise errors.NotFound(f"context {name!r} does not exist")
    if found.current_context == name:
        found.current_context = ""
    profiles.save(found, path)
    typer.echo(f'Deleted context "{name}".')


@command(app, "view")
def view(
    raw: Annotated[bool, typer.Option("--raw", help="Show tokens.")] = False,
) -> None:
    """Print the profile file, tokens hidden unless --raw."""
    found = profiles.load(_path())
    data = {
        "current-context": found.current_context,
        "contexts": {
            name: {k: ("REDACTED" if k == "token" and not raw else v)
                   for k, v in vars(ctx).items() if k != "name" and v}
            for name, ctx in sorted(found.contexts.items())
        },
    }
    typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
