"""Reading ``-f``: files, directories (``-R`` for their subdirectories) and stdin.

Every source is read and decoded before anything is sent, so one bad document
(a tab in the indentation, an unknown field) stops the whole command with its
``file:line:column`` and nothing half-applied. Objects keep the order they are
written in: files in the order given, a directory's files sorted by path, the
documents of a file top to bottom. A kubectl ``List`` (what ``get -o json``
prints for several objects) stands for its items.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dora.api import codec, errors
from dora.api.v1 import object_pb2
from dora.ctl import templating

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Source:
    name: str
    text: str


def read_sources(paths: Sequence[str], *, recursive: bool = False,
                 stdin: TextIO | None = None) -> list[Source]:
    """The text of every file ``paths`` name, ``-`` being stdin."""
    sources: list[Source] = []
    for given in paths:
        if given == "-":
            sources.append(Source("<stdin>", (stdin or sys.stdin).read()))
            continue
        path = Path(given)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern)
                           if p.is_file() and p.suffix.lower() in SUFFIXES)
            sources.extend(_read(p) for p in found)
        else:
            sources.append(_read(path))
    return sources


def _read(path: Path) -> Source:
    try:
        return Source(str(path), path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.DoraError(f"{path}: no such file or directory") from None
    except UnicodeDecodeError:
        raise errors.Invalid(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise errors.DoraError(f"{path}: {exc.strerror}") from None


def decode(sources: Sequence[Source], *,
           values: Mapping[str, str] | None = None) -> list[object_pb2.Object]:
    """Every object of ``sources``; with ``values``, ``$KEY`` substituted first."""
    found: list[object_pb2.Object] = []
    for source in sources:
        text = source.text
        if values is not None:
            text = templating.substitute(text, values, source=source.name)
        for document in codec.load_documents(text, source=source.name):
            found.extend(_objects(document))
    return found


def load(paths: Sequence[str], *, recursive: bool = False,
         values: Mapping[str, str] | None = None,
         stdin: TextIO | None = None) -> list[object_pb2.Object]:
    objs = decode(read_sources(paths, recursive=recursive, stdin=stdin), values=values)
    if not objs:
        raise errors.DoraError(f"no objects in {', '.join(paths)}")
    return objs


# The order in which a set of manifests can be applied in one go (Helm's idea): the
# places first, then who may act there, what they run on, and what runs. A kind not
# listed comes last, in the order written.
APPLY_ORDER: tuple[str, ...] = (
    "Zone", "Workspace", "Role", "User", "Storage", "Node", "Volume", "Resourcecredit",
    "Usercredit", "Quota", "Workload", "Task", "Container",
)


def in_dependency_order(objs: Sequence[object_pb2.Object], *,
                        reverse: bool = False) -> list[object_pb2.Object]:
    """``objs`` sorted so each comes after what it needs (``reverse``: before, for a
    delete); objects of one kind keep the order they were written in."""
    rank = {kind: i for i, kind in enumerate(APPLY_ORDER)}

    def key(obj: object_pb2.Object) -> int:
        position = rank.get(obj.kind, len(APPLY_ORDER))
        return -position if reverse else position

    return sorted(objs, key=key)


def _objects(document: codec.Document) -> list[object_pb2.Object]:
    data: Any = document.data
    if isinstance(data, Mapping) and data.get("kind") == "List":
        items = data.get("items") or []
        if not isinstance(items, list):
            raise document.locate(errors.Invalid("expected a list", field="items"))
        return [_decode(document, item, f"items[{i}]") for i, item in enumerate(items)]
    return [_decode(document, data, "")]


def _decode(document: codec.Document, data: Any, prefix: str) -> object_pb2.Object:
    try:
        return codec.from_dict(data)
    except errors.Invalid as exc:
        if not prefix:
            raise document.locate(exc) from None
        violations = tuple(
            errors.FieldViolation(f"{prefix}.{v.field}" if v.field else prefix, v.description)
            for v in exc.violations
        ) or (errors.FieldViolation(prefix, exc.message),)
        raise document.locate(errors.Invalid.of(list(violations))) from None
