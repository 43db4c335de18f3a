"""``doractl label`` and ``doractl annotate``: set or remove an object's labels and
annotations, kubectl's way.

``doractl label wk/web tier=front env-`` sets ``tier`` and removes ``env``; changing
a key that already has another value needs ``--overwrite`` (so a typo does not
silently replace a value someone relies on). Each object is read, changed and
applied back at the version read (again on a conflict), so a concurrent change to
it is never lost. Label keys and values are checked as the label selector reads
them; annotation values are free text.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Annotated, Literal

import typer

from dora.api import errors, kinds
from dora.api.client import ApplyResult
from dora.ctl import printers, session
from dora.ctl.options import KindArg, SelectorOpt, command, kind_of, settings_of

Field = Literal["labels", "annotations"]

_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

ArgsArg = Annotated[list[str] | None, typer.Argument(
    metavar="[NAME...] KEY=VALUE... KEY-...",
    help="The objects' names (unless KIND/NAME or -l), then the changes.",
    show_default=False,
)]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Allow changing a key that already has another value.")]


@dataclass(frozen=True)
class Changes:
    set: dict[str, str]
    remove: list[str]


def register(app: typer.Typer) -> None:
    command(app, "label")(label)
    command(app, "annotate")(annotate)


def label(ctx: typer.Context, kind: KindArg, args: ArgsArg = None,
          overwrite: OverwriteOpt = False, selector: SelectorOpt = "") -> None:
    """Set (KEY=VALUE) or remove (KEY-) labels: `label wk/web tier=front old-`."""
    _run(ctx, "labels", kind, args or [], overwrite=overwrite, selector=selector)


def annotate(ctx: typer.Context, kind: KindArg, args: ArgsArg = None,
             overwrite: OverwriteOpt = False, selector: SelectorOpt = "") -> None:
    """Set (KEY=VALUE) or remove (KEY-) annotations: `annotate wk/web owner='ML team'`."""
    _run(ctx, "annotations", kind, args or [], overwrite=overwrite, selector=selector)


def parse_changes(words: list[str], field: Field) -> Changes:
    """``KEY=VALUE`` and ``KEY-`` words; a bad key or label value is a usage error."""
    wanted: dict[str, str] = {}
    remove: list[str] = []
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if field == "labels" and not _LABEL_VALUE.match(value):
                raise typer.BadParameter(
                    f"{word!r}: a label value is at most letters, digits, '-', '_' and '.', "
                    "starting and ending with a letter or digit", param_hint="KEY=VALUE")
            wanted[_key(key, word)] = value
        elif word.endswith("-"):
            remove.append(_key(word[:-1], word))
        else:
            raise typer.BadParameter(f"{word!r} is neither KEY=VALUE nor KEY-",
                                     param_hint="KEY=VALUE")
    both = set(wanted) & set(remove)
    if both:
        raise typer.BadParameter(f"{sorted(both)[0]!r} is both set and removed",
                                 param_hint="KEY=VALUE")
    if not wanted and not remove:
        raise typer.BadParameter("give at least one KEY=VALUE or KEY-", param_hint="KEY=VALUE")
    return Changes(wanted, remove)


def _key(key: str, word: str) -> str:
    if not _KEY.match(key):
        raise typer.BadParameter(f"{word!r}: {key!r} is not a valid key", param_hint="KEY")
    return key


def _split(kind_word: str, args: list[str], selector: str) -> tuple[kinds.Kind, list[str],
                                                                    list[str]]:
    """The kind, the names and the change words of ``KIND[/NAME] [NAME...] CHANGES...``."""
    word, slash, first = kind_word.partition("/")
    names = [first] if slash and first else []
    changes = list(args)
    while changes and "=" not in changes[0] and not changes[0].endswith("-"):
        names.append(changes.pop(0))
    if names and selector:
        raise typer.BadParameter("give names or a selector (-l), not both", param_hint="-l")
    if not names and not selector:
        raise typer.BadParameter("name the objects (KIND/NAME, KIND NAME or -l SELECTOR)",
                                 param_hint="NAME")
    return kind_of(word), names, changes


def change(meta: dict[str, str], changes: Changes, *, overwrite: bool, what: str) -> bool:
    """Make ``changes`` on ``meta`` (the labels or annotations); whether anything changed.
    A value that differs and is not to be overwritten is an error naming it."""
    for key, value in changes.set.items():
        if key in meta and meta[key] != value and not overwrite:
            raise errors.Invalid(
                f"{what} {key!r} already has the value {meta[key]!r}; pass --overwrite "
                "to change it")
    changed = False
    for key, value in changes.set.items():
        changed |= meta.get(key) != value
        meta[key] = value
    for key in changes.remove:
        changed |= key in meta
        meta.pop(key, None)
    return changed


def _run(ctx: typer.Context, field: Field, kind_word: str, args: list[str], *,
         overwrite: bool, selector: str) -> None:
    found, names, words = _split(kind_word, args, selector)
    changes = parse_changes(words, field)
    what = "label" if field == "labels" else "annotation"
    done = "labeled" if field == "labels" else "annotated"
    connection = settings_of(ctx).connection()

    async def one(s: session.Session, name: str) -> bool:
        async def attempt() -> bool:
            obj = await s.get(found, name)
            current = dict(getattr(obj.metadata, field))
            if not change(current, changes, overwrite=overwrite, what=what):
                return False
            target = getattr(obj.metadata, field)
            target.clear()
            target.update(current)
            _, result = await s.client.apply(obj)
            return bool(result != ApplyResult.UNCHANGED)

        return await session.retry_on_conflict(f"{found.name.lower()}/{name}", attempt)

    async def work(s: session.Session) -> bool:
        targets = names
        if selector:
            zone, workspace = s.scope(found)
            items, _ = await s.client.list(found.name, zone=zone, workspace=workspace,
                                           label_selector=selector)
            targets = [o.metadata.name for o in items]
            if not targets:
                typer.echo(f"No {found.plural} found.", err=True)
        ok = True
        for name in targets:
            ref = f"{found.name.lower()}/{name}"
            try:
                changed = await one(s, name)
            except errors.Unavailable:
                raise
            except errors.DoraError as exc:
                ok = False
                sys.stdout.flush()
                typer.echo(printers.error_text(exc, about=ref), err=True)
                continue
            typer.echo(f"{ref} {done if changed else 'not ' + done}")
        return ok

    if not session.run(connection, work):
        raise typer.Exit(1)
