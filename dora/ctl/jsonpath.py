"""kubectl's JSONPath templates, the subset scripts use: ``-o jsonpath=``,
``-o custom-columns=`` and ``--sort-by``.

A template is text with ``{...}`` parts, evaluated against the JSON ``-o json``
prints (a ``List`` with ``items``, or one object asked for by name):

- ``{.a.b}``, ``{.items[0]}``, ``{.items[-1]}``, ``{.items[*].metadata.name}``,
  ``{.metadata.labels['dora.io/node']}`` (a key with dots), ``{$.kind}``;
- ``{range .items[*]}...{end}``: the text between, once per element, its paths
  relative to the element;
- ``{"\\n"}``, ``{'\\t'}``: literal strings with escapes.

Several results of one part are separated by a space; a map or list prints as
JSON; a missing key prints nothing (as ``kubectl get`` does). Anything else
(filters, recursive descent, slices) is refused with the position it starts at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dora.api import errors

Segment = tuple[str, Any]  # ("key", "name") | ("index", 3) | ("all", None)


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Path:
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Range:
    path: Path
    body: tuple[Node, ...]


Node = Text | Path | Range

_IDENT = re.compile(r"[A-Za-z0-9_\-/]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _bad(text: str, where: int, why: str) -> errors.Invalid:
    return errors.Invalid(f"jsonpath {text!r}: {why} at position {where}", field="output")


def parse_path(text: str, *, template: str | None = None, offset: int = 0) -> Path:
    """A path: ``.a.b``, ``$.a``, ``.items[*].x``, ``['key.with.dots']``, ``[2]``."""
    source = template if template is not None else text
    i = 0
    expr = text.strip()
    if expr.startswith("$"):
        i = 1
    segments: list[Segment] = []
    while i < len(expr):
        char = expr[i]
        if char == ".":
            if expr[i + 1:i + 2] == ".":
                raise _bad(source, offset + i, "recursive descent (..) is not supported")
            match = _IDENT.match(expr, i + 1)
            if match is None:
                if i + 1 == len(expr) and not segments:  # "." alone: the value itself
                    i += 1
                    continue
                if expr[i + 1:i + 2] == "*":
                    segments.append(("all", None))
                    i += 2
                    continue
                raise _bad(source, offset + i, "a field name must follow '.'")
            segments.append(("key", match.group()))
            i = match.end()
        elif char == "[":
            end = expr.find("]", i)
            if end < 0:
                raise _bad(source, offset + i, "unclosed '['")
            inner = expr[i + 1:end].strip()
            if inner == "*":
                segments.append(("all", None))
            elif re.fullmatch(r"-?\d+", inner):
                segments.append(("index", int(inner)))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                segments.append(("key", inner[1:-1]))
            else:
                raise _bad(source, offset + i,
                           f"[{inner}] is not supported (use [N], [*] or ['key'])")
            i = end + 1
        else:
            raise _bad(source, offset + i, f"unexpected {char!r}")
    return Path(tuple(segments))


def parse(template: str) -> tuple[Node, ...]:
    """The nodes of a template (text, paths, ranges); ``errors.Invalid`` if malformed."""
    nodes, _, _ = _parse(template, 0, top=True)
    return tuple(nodes)


def _parse(template: str, i: int, *, top: bool) -> tuple[list[Node], int, bool]:
    nodes: list[Node] = []
    text: list[str] = []
    while i < len(template):
        char = template[i]
        if char != "{":
            if char == "}":
                raise _bad(template, i, "unmatched '}'")
            text.append(char)
            i += 1
            continue
        end = _closing(template, i)
        inner = template[i + 1:end].strip()
        if text:
            nodes.append(Text("".join(text)))
            text = []
        if inner == "end":
            if top:
                raise _bad(template, i, "{end} without {range}")
            return nodes, end + 1, True
        if inner.startswith("range ") or inner == "range":
            path = parse_path(inner[len("range"):], template=template, offset=i + 6)
            body, after, closed = _parse(template, end + 1, top=False)
            if not closed:
                raise _bad(template, i, "{range} without {end}")
            nodes.append(Range(path, tuple(body)))
            i = after
            continue
        if inner[:1] in ("'", '"'):
            nodes.append(Text(_literal(template, i, inner)))
        else:
            nodes.append(parse_path(inner, template=template, offset=i + 1))
        i = end + 1
    if text:
        nodes.append(Text("".join(text)))
    return nodes, i, False


def _closing(template: str, start: int) -> int:
    quote = ""
    i = start + 1
    while i < len(template):
        char = template[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "}":
            return i
        i += 1
    raise _bad(template, start, "unclosed '{'")


def _literal(template: str, where: int, inner: str) -> str:
    if len(inner) < 2 or inner[-1] != inner[0]:
        raise _bad(template, where, "unterminated string")
    out: list[str] = []
    body = inner[1:-1]
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def values(path: Path, data: Any) -> list[Any]:
    """What ``path`` selects in ``data``: none when a key is missing."""
    current = [data]
    for kind, arg in path.segments:
        following: list[Any] = []
        for value in current:
            if kind == "key":
                if isinstance(value, dict) and arg in value:
                    following.append(value[arg])
            elif kind == "index":
                if isinstance(value, list) and -len(value) <= arg < len(value):
                    following.append(value[arg])
            elif isinstance(value, list):
                following.extend(value)
            elif isinstance(value, dict):
                following.extend(value.values())
        current = following
    return current


def show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render(nodes: Sequence[Node], data: Any) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Path):
            out.append(" ".join(show(v) for v in values(node, data)))
        else:
            for element in values(node.path, data):
                out.append(render(node.body, element))
    return "".join(out)


def _expression(text: str) -> Path:
    """A custom-columns or --sort-by expression: ``.a.b`` or ``{.a.b}``."""
    expr = text.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    return parse_path(expr)


@dataclass(frozen=True)
class CustomColumn:
    header: str
    path: Path


def parse_columns(spec: str) -> list[CustomColumn]:
    """``NAME:.metadata.name,NODE:.spec.nodeName``."""
    found = []
    for part in spec.split(","):
        header, colon, expr = part.partition(":")
        if not colon or not header.strip() or not expr.strip():
            raise errors.Invalid(f"custom-columns {part!r}: expected HEADER:.path.to.field",
                                 field="output")
        found.append(CustomColumn(header.strip(), _expression(expr)))
    if not found:
        raise errors.Invalid("custom-columns needs at least one HEADER:.path", field="output")
    return found


def cell(column: CustomColumn, data: Any) -> str:
    found = values(column.path, data)
    return ",".join(show(v) for v in found) if found else "<none>"


def sort_key(path: Path) -> Any:
    """A key for ``sorted`` of object dicts by ``path`` (``--sort-by``): numbers in
    numeric order, then text; objects without the field first."""

    def key(data: Any) -> tuple[int, float, str]:
        found = values(path, data)
        if not found:
            return (0, 0.0, "")
        value = found[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (1, float(value), "")
        return (2, 0.0, show(value))

    return key


def sort_path(text: str) -> Path:
    return _expression(text)
