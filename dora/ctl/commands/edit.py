"""``doractl edit KIND/NAME``: change an object in your editor, kubectl's way.

The object's YAML goes to a temporary file that ``$DORA_EDITOR``, ``$VISUAL`` or
``$EDITOR`` (default ``vi``) opens; when the editor exits, the file is applied.
The YAML keeps ``metadata.resourceVersion``, so an apply over someone else's
change in the meantime is a conflict, not a silent overwrite. A file that does
not decode, names another object, or that the server refuses, is opened again
with the error on top as comments; saving it unchanged (or emptying it) gives
up with that error. Saving the file as it was first shown changes nothing.
``status`` is the controllers' and is not applied.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import typer

from dora.api import codec, errors, objects
from dora.api.client import ApplyResult
from dora.api.v1 import object_pb2
from dora.ctl import session
from dora.ctl.commands.wait import NamesArg, targets
from dora.ctl.options import KindArg, command, settings_of

HEADER = """\
# Edit the object below; these lines starting with '#' are ignored. Saving the file
# applies it; an empty file, or the file unchanged, changes nothing.
#
"""


def register(app: typer.Typer) -> None:
    command(app, "edit")(edit)


def editor_command() -> list[str]:
    for variable in ("DORA_EDITOR", "VISUAL", "EDITOR"):
        value = os.environ.get(variable, "").strip()
        if value:
            return shlex.split(value)
    return ["vi"]


def _strip_comments(text: str) -> str:
    """``text`` without the comment lines on top (the header and any error): those
    inside the YAML (a ``#`` line in a block scalar) are the object's."""
    lines = text.splitlines(keepends=True)
    while lines and lines[0].lstrip().startswith("#"):
        lines.pop(0)
    return "".join(lines)


def _commented(error: errors.DoraError) -> str:
    lines = [f"error: {error.message}", *(f"  {v}" for v in error.violations
                                           if str(v) not in error.message)]
    return "".join(f"# {line}\n" for line in lines) + "#\n"


def _decode(text: str, original: object_pb2.Object) -> object_pb2.Object:
    found = codec.decode_yaml(text, source="edited file")
    if len(found) != 1:
        raise errors.Invalid(f"the file must hold one object, not {len(found)}")
    obj = found[0]
    ref, wanted = objects.ref_of(obj), objects.ref_of(original)
    if obj.kind != original.kind or obj.metadata.name != original.metadata.name:
        raise errors.Invalid(f"the file must describe {wanted}, not {ref}; to make another "
                             "object, use apply")
    body = objects.body(obj)
    if "status" in body.DESCRIPTOR.fields_by_name:
        body.ClearField("status")
    return obj


def edit(ctx: typer.Context, kind: KindArg, names: NamesArg = None) -> None:
    """Edit an object's YAML in $EDITOR and apply it when the editor exits."""
    found, wanted = targets(kind, names)
    if len(wanted) != 1:
        raise typer.BadParameter("edit one object at a time", param_hint="NAME")
    name = wanted[0]
    command_line = editor_command()

    async def work(s: session.Session) -> str:
        original = await s.get(found, name)
        shown = codec.to_yaml([original])
        with tempfile.TemporaryDirectory(prefix="doractl-edit-") as folder:
            path = Path(folder) / f"{found.name.lower()}-{name}.yaml"
            text, error = HEADER + shown, None
            while True:
                await asyncio.to_thread(path.write_text, text, encoding="utf-8")
                await asyncio.to_thread(_open_editor, command_line, path)
                edited = _strip_comments(await asyncio.to_thread(path.read_text,
                                                                 encoding="utf-8"))
                if not edited.strip() or edited == _strip_comments(text):
                    if error is not None:
                        raise errors.DoraError(f"edit abandoned; the file was refused: "
                                               f"{error.message}", violations=error.violations)
                    return f"Edit cancelled, no changes made to {found.name.lower()}/{name}."
                try:
                    if edited == shown:
                        return f"Edit cancelled, no changes made to {found.name.lower()}/{name}."
                    _, result = await s.client.apply(_decode(edited, original))
                except (errors.Invalid, errors.Conflict, errors.Forbidden,
                        errors.NotFound) as exc:
                    error = exc
                    text = HEADER + _commented(exc) + edited
                    continue
                word = "unchanged" if result == ApplyResult.UNCHANGED else "edited"
                return f"{found.name.lower()}/{name} {word}"

    typer.echo(session.run(settings_of(ctx).connection(), work))


def _open_editor(command_line: list[str], path: Path) -> None:
    try:
        done = subprocess.run([*command_line, str(path)], check=False)
    except FileNotFoundError:
        raise errors.DoraError(f"cannot run the editor {command_line[0]!r}: set $EDITOR "
                               "to one that exists") from None
    if done.returncode != 0:
        raise errors.DoraError(f"the editor {command_line[0]!r} exited with "
                               f"{done.returncode}; nothing was applied")
