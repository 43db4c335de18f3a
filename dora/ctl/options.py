"""Options every command shares, and the global options accepted anywhere on the line.

kubectl users write ``doractl get wk -z dc-rov-01`` as often as
``doractl -z dc-rov-01 get wk``. Click only knows a group's options before the
subcommand, so ``command`` registers each command with the global options added
to its own signature (cobra's "persistent flags"); their values land in the one
``Settings`` the root callback made, the most specific one winning. A command
that defines one of those options itself (``config set-context --server``) keeps
its own.
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
import typer.models

from dora.api import errors, kinds
from dora.ctl import profiles, session

F = TypeVar("F", bound=Callable[..., Any])

GLOBAL_PANEL = "Global options"


@dataclass
class Settings:
    """What the command line said about where to connect, before the profile file."""

    server: str | None = None
    token: str | None = None
    context: str | None = None
    zone: str | None = None
    workspace: str | None = None
    debug: bool = False

    def connection(self) -> profiles.Connection:
        return profiles.resolve(
            profiles.load(profiles.default_path()), server=self.server, token=self.token,
            context=self.context, zone=self.zone, workspace=self.workspace,
        )


@dataclass(frozen=True)
class GlobalOption:
    field: str
    decls: tuple[str, ...]
    help: str
    metavar: str = ""

    @property
    def is_flag(self) -> bool:
        return not self.metavar


GLOBALS: tuple[GlobalOption, ...] = (
    GlobalOption("server", ("--server", "-s"),
                 "The apiserver: HOST:PORT, https://HOST:PORT for TLS, or several, "
                 "comma-separated. (env: DORA_SERVER)", "ENDPOINT"),
    GlobalOption("token", ("--token",), "The token to authenticate with. (env: DORA_TOKEN)",
                 "TOKEN"),
    GlobalOption("context", ("--context",),
                 "The context of the profile file to use. (env: DORA_CONTEXT)", "NAME"),
    GlobalOption("zone", ("--zone", "-z"), "The zone; default: the context's.", "ZONE"),
    GlobalOption("workspace", ("--workspace", "--group", "-g"),
                 "The workspace (-g/--group: the old CLI's word); default: the context's.",
                 "WORKSPACE"),
    GlobalOption("debug", ("--debug",), "Show tracebacks of errors."),
)


def global_option(option: GlobalOption, *, hidden: bool = False) -> Any:
    """The ``typer.Option`` of a global option, for a signature."""
    if option.is_flag:
        return typer.Option(*option.decls, help=option.help, hidden=hidden,
                            rich_help_panel=GLOBAL_PANEL, show_default=False)
    complete = complete_context if option.field == "context" else None
    return typer.Option(*option.decls, help=option.help, metavar=option.metavar,
                        hidden=hidden, rich_help_panel=GLOBAL_PANEL, show_default=False,
                        autocompletion=complete)


def complete_context(incomplete: str) -> list[str]:
    """The contexts of the profile file; none if it cannot be read."""
    try:
        names = profiles.load(profiles.default_path()).contexts
    except Exception:
        return []
    return sorted(n for n in names if n.startswith(incomplete))


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(Settings)


def command(app: typer.Typer, name: str, **kwargs: Any) -> Callable[[F], F]:
    """``app.command(name)``, with the global options added to the command's own."""

    def register(fn: F) -> F:
        app.command(name, **kwargs)(with_global_options(fn))
        return fn

    return register


def with_global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    hints = typing.get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in signature.parameters.values()]
    taken = set(_declared_options(own))
    context_name = next((p.name for p in own if p.annotation is typer.Context), None)
    extra: list[inspect.Parameter] = []
    if context_name is None:
        context_name = "dora_ctx"
        extra.append(inspect.Parameter(context_name, inspect.Parameter.KEYWORD_ONLY,
                                       annotation=typer.Context))
    added: dict[str, GlobalOption] = {}
    for option in GLOBALS:
        if taken & set(option.decls):
            continue
        param = f"global_{option.field}"
        kind = bool if option.is_flag else str | None
        default: Any = False if option.is_flag else None
        annotation = Annotated[kind, global_option(option)]  # type: ignore[valid-type]
        extra.append(inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY,
                                       annotation=annotation, default=default))
        added[param] = option
    injected_context = context_name == "dora_ctx"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        ctx: typer.Context = kw.pop(context_name) if injected_context else kw[context_name]
        settings = settings_of(ctx)
        for param, option in added.items():
            value = kw.pop(param)
            if value not in (None, False):
                setattr(settings, option.field, value)
        return fn(*args, **kw)

    parameters = _ordered([*own, *extra])
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters
                               if p.annotation is not inspect.Parameter.empty}
    return wrapper


def _ordered(parameters: list[inspect.Parameter]) -> list[inspect.Parameter]:
    # A signature lists positional parameters before keyword-only ones.
    return sorted(parameters, key=lambda p: p.kind)


def _declared_options(parameters: list[inspect.Parameter]) -> Iterator[str]:
    for param in parameters:
        infos = [m for m in getattr(param.annotation, "__metadata__", ())
                 if isinstance(m, typer.models.OptionInfo)]
        if not infos:
            continue
        yield "--" + param.name.replace("_", "-")
        for info in infos:
            if isinstance(info.default, str) and info.default.startswith("-"):
                yield info.default
            yield from info.param_decls or ()


# -- options several commands share ---------------------------------------------------

class Output(enum.StrEnum):
    table = "table"
    wide = "wide"
    yaml = "yaml"
    json = "json"
    name = "name"


TEMPLATE_FORMATS = ("jsonpath", "custom-columns")


@dataclass(frozen=True)
class Format:
    """An ``-o`` value of ``get``: one of ``Output``, or a template format
    (``jsonpath=TEMPLATE``, ``custom-columns=SPEC``) with its template."""

    output: Output
    template_kind: str = ""
    template: str = ""


def parse_format(text: str) -> Format:
    """``yaml``, ``wide``..., ``jsonpath=...`` or ``custom-columns=...``; a usage error
    naming the formats otherwise."""
    word, equals, template = text.partition("=")
    if equals and word.lower() in TEMPLATE_FORMATS:
        if not template:
            raise typer.BadParameter(f"{word}= needs a template", param_hint="--output")
        return Format(Output.table, word.lower(), template)
    try:
        return Format(Output(text.lower()))
    except ValueError:
        known = ", ".join([*Output, *(f"{t}=..." for t in TEMPLATE_FORMATS)])
        raise typer.BadParameter(f"unknown output format {text!r} (known: {known})",
                                 param_hint="--output") from None


def complete_format(incomplete: str) -> list[str]:
    words = [*Output, *(f"{t}=" for t in TEMPLATE_FORMATS)]
    return [w for w in words if w.startswith(incomplete)]


def complete_kind(incomplete: str) -> list[str]:
    words = sorted({k.plural for k in kinds.KINDS} | {k.name.lower() for k in kinds.KINDS})
    return [w for w in words if w.startswith(incomplete.lower())]


def kind_of(word: str) -> kinds.Kind:
    """The kind ``word`` names (``wk``, ``workloads``, ``Workload``); else a usage error."""
    try:
        return kinds.lookup(word)
    except errors.Invalid:
        known = ", ".join(sorted(k.plural for k in kinds.KINDS))
        raise typer.BadParameter(
            f"unknown resource type {word!r}; known: {known}", param_hint="KIND"
        ) from None


def complete_name(ctx: typer.Context, incomplete: str) -> list[str]:
    """Names of objects of the KIND already on the line, asked of the server; none if
    anything goes wrong (completion must never print an error)."""
    try:
        found = kinds.lookup(str(ctx.params.get("kind") or "").partition("/")[0])
        settings = Settings()
        for params, prefix in ((ctx.parent.params if ctx.parent else {}, ""),
                               (ctx.params, "global_")):
            for option in GLOBALS:
                value = params.get(prefix + option.field)
                if value:
                    setattr(settings, option.field, value)
        connection = settings.connection()

        async def names(s: session.Session) -> list[str]:
            zone, workspace = s.scope(found)
            items, _ = await s.client.list(found.name, zone=zone, workspace=workspace)
            return [o.metadata.name for o in items]

        return [n for n in session.run(connection, names, timeout=3.0)
                if n.startswith(incomplete)]
    except Exception:
        return []


KindArg = Annotated[str, typer.Argument(
    metavar="KIND", help="A kind: plural, singular or short name (wk, c, vol, ...).",
    autocompletion=complete_kind, show_default=False,
)]
OutputOpt = Annotated[Output, typer.Option(
    "--output", "-o", help="Output format.", case_sensitive=False,
)]
FormatOpt = Annotated[str, typer.Option(
    "--output", "-o", metavar="FORMAT", autocompletion=complete_format,
    help="table, wide, yaml, json, name, jsonpath=TEMPLATE (kubectl's syntax) or "
         "custom-columns=HEADER:.path,...",
)]
SelectorOpt = Annotated[str, typer.Option(
    "--selector", "-l", metavar="SELECTOR",
    help="Label selector: app=web,tier!=db,env in (a,b),!legacy.", show_default=False,
)]
FilesOpt = Annotated[list[str], typer.Option(
    "--filename", "-f", metavar="FILE|DIR|-",
    help="A YAML/JSON file, a directory of them, or - for stdin; repeatable.",
    show_default=False,
)]
RecursiveOpt = Annotated[bool, typer.Option(
    "--recursive", "-R", help="Read directories given with -f recursively.",
)]
