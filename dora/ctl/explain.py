"""``doractl explain``'s text: a kind's or a field's documentation, from the protos.

kubectl explain reads the OpenAPI schema; Dora's schema is its protobuf messages,
and their documentation is the comments in ``proto/``. The generated modules keep
no comments, so ``hack/gen-proto.sh`` also writes ``dora/api/v1/descriptors.binpb``
(a ``FileDescriptorSet`` with source info) next to them; this module reads the
comments from it by full name and walks the live descriptors (the ones the codec
uses) for the structure, so field names are the YAML's (``json_name``).

The top level is the YAML's shape, not the ``Object`` envelope: ``apiVersion``,
``kind``, ``metadata`` and the kind's ``spec`` and ``status``.
"""

from __future__ import annotations

import functools
import importlib.resources
import textwrap
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor, descriptor_pb2

from dora.api import errors, kinds
from dora.api.v1 import object_pb2

FD = descriptor.FieldDescriptor
# upb and pure-Python descriptors differ in type, not in behaviour.
Descriptor = Any
FieldDescriptor = Any

_SCALARS = {
    FD.TYPE_STRING: "string", FD.TYPE_BYTES: "bytes", FD.TYPE_BOOL: "boolean",
    FD.TYPE_DOUBLE: "number", FD.TYPE_FLOAT: "number",
    FD.TYPE_INT32: "integer", FD.TYPE_INT64: "integer", FD.TYPE_UINT32: "integer",
    FD.TYPE_UINT64: "integer", FD.TYPE_SINT32: "integer", FD.TYPE_SINT64: "integer",
    FD.TYPE_FIXED32: "integer", FD.TYPE_FIXED64: "integer", FD.TYPE_SFIXED32: "integer",
    FD.TYPE_SFIXED64: "integer",
}
# Well-known messages written as one scalar in YAML.
_WELL_KNOWN = {"google.protobuf.Timestamp": "string (RFC 3339 time)",
               "google.protobuf.Duration": "string (duration, e.g. 1.5s)",
               # written as a plain list (``Workload: [Apply, Get]``), as the codec reads it
               "dora.api.v1.Verbs": "[]string"}
# Source-info path tags of a FileDescriptorProto and a DescriptorProto.
_FILE_MESSAGES, _FILE_ENUMS, _MESSAGE_FIELDS, _MESSAGE_NESTED, _MESSAGE_ENUMS = 4, 5, 2, 3, 4
_TOP = {
    "apiVersion": ("string", "The API version: v1."),
    "kind": ("string", "The kind of the object, e.g. Workload."),
}


@functools.cache
def comments() -> dict[str, str]:
    """Each message's, enum's and field's comment by full name (``pkg.Msg.field``)."""
    data = importlib.resources.files("dora.api.v1").joinpath("descriptors.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    found: dict[str, str] = {}
    for file in files.file:
        by_path = {tuple(loc.path): _comment(loc) for loc in file.source_code_info.location}
        prefix = f"{file.package}." if file.package else ""
        for index, message in enumerate(file.message_type):
            _walk(message, prefix, (_FILE_MESSAGES, index), by_path, found)
        for index, enum in enumerate(file.enum_type):
            found[prefix + enum.name] = by_path.get((_FILE_ENUMS, index), "")
    return {name: text for name, text in found.items() if text}


def _comment(location: descriptor_pb2.SourceCodeInfo.Location) -> str:
    text = location.leading_comments or location.trailing_comments
    return textwrap.dedent(text).strip()


def _walk(message: descriptor_pb2.DescriptorProto, prefix: str, path: tuple[int, ...],
          by_path: dict[tuple[int, ...], str], found: dict[str, str]) -> None:
    name = prefix + message.name
    found[name] = by_path.get(path, "")
    for index, field in enumerate(message.field):
        found[f"{name}.{field.name}"] = by_path.get((*path, _MESSAGE_FIELDS, index), "")
    for index, nested in enumerate(message.nested_type):
        _walk(nested, f"{name}.", (*path, _MESSAGE_NESTED, index), by_path, found)
    for index, enum in enumerate(message.enum_type):
        found[f"{name}.{enum.name}"] = by_path.get((*path, _MESSAGE_ENUMS, index), "")


@dataclass(frozen=True)
class Field:
    """One line of FIELDS: the YAML name, its type as written, its comment."""

    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Explanation:
    kind: str
    path: str
    type: str
    description: str
    fields: tuple[Field, ...]
    values: tuple[str, ...] = ()

    def text(self, *, recursive: bool = False) -> str:
        lines = [f"KIND:     {self.kind}", "VERSION:  v1", ""]
        if self.path:
            lines[-1:] = [f"FIELD:    {self.path} <{self.type}>", ""]
        lines.append("DESCRIPTION:")
        lines.extend(_indent(self.description or "<empty>", 4))
        if self.values:
            lines += ["", "VALUES:", *(f"    {v}" for v in self.values)]
        if self.fields:
            lines += ["", "FIELDS:"]
            for f in self.fields:
                lines.append(f"    {f.name}\t<{f.type}>")
                if not recursive and f.description:
                    lines.extend(_indent(f.description, 6))
        return "\n".join(lines)


def _indent(text: str, by: int) -> list[str]:
    return [" " * by + line if line else "" for line in text.splitlines()]


def explain(target: str) -> Explanation:
    """``workload``, ``wk.spec.replica``, ``node.status.gpus``: what that is.

    Kinds are named as everywhere in doractl (``wk``, ``workloads``); field names
    as in YAML (``pullPolicy``; the proto name ``pull_policy`` works too). An
    unknown field is ``Invalid`` naming the path so far and the fields there."""
    word, _, rest = target.partition(".")
    kind = kinds.lookup(word)
    body: Descriptor = object_pb2.Object.DESCRIPTOR.fields_by_name[kind.field].message_type
    parts = rest.split(".") if rest else []
    if any(not p for p in parts):
        raise errors.Invalid(f"{target!r}: an empty field name")
    docs = comments()
    if not parts:
        return Explanation(kind.name, "", "Object", docs.get(body.full_name, ""),
                           _top_fields(body, docs))
    walked: list[str] = []
    first = parts[0]
    if first in _TOP and len(parts) == 1:
        type_name, text = _TOP[first]
        return Explanation(kind.name, first, type_name, text, ())
    if first == "metadata":
        field: FieldDescriptor = object_pb2.Object.DESCRIPTOR.fields_by_name["metadata"]
    else:
        field = _field(body, first)
        if field is None:
            raise _unknown(kind.name, target, [], first, _top_names(body))
    walked.append(first)
    for part in parts[1:]:
        message = field.message_type
        if message is None or message.full_name in _WELL_KNOWN or _is_map(field):
            raise errors.Invalid(f"{'.'.join(walked)} is {_type(field)}: it has no field "
                                 f"{part!r}")
        found = _field(message, part)
        if found is None:
            raise _unknown(kind.name, target, walked, part,
                           [_name(f) for f in message.fields])
        field = found
        walked.append(part)
    description = docs.get(field.full_name, "")
    if field.message_type is not None and not _is_map(field) \
            and field.message_type.full_name not in _WELL_KNOWN:
        type_doc = docs.get(field.message_type.full_name, "")
        description = "\n\n".join(d for d in (description, type_doc) if d)
        fields = tuple(_describe(f, docs) for f in field.message_type.fields)
    else:
        fields = ()
    values: tuple[str, ...] = ()
    if field.enum_type is not None:
        values = tuple(v.name for v in field.enum_type.values)
    return Explanation(kind.name, ".".join(walked), _type(field), description, fields, values)


def _top_fields(body: Descriptor, docs: dict[str, str]) -> tuple[Field, ...]:
    meta = object_pb2.Object.DESCRIPTOR.fields_by_name["metadata"]
    return (
        *(Field(name, type_name, text) for name, (type_name, text) in _TOP.items()),
        _describe(meta, docs),
        *(_describe(f, docs) for f in body.fields),
    )


def _top_names(body: Descriptor) -> list[str]:
    return [*_TOP, "metadata", *(_name(f) for f in body.fields)]


def _unknown(kind: str, target: str, walked: list[str], part: str,
             known: list[str]) -> errors.Invalid:
    where = ".".join(walked) or kind
    return errors.Invalid(f"{target!r}: {where} has no field {part!r}; its fields: "
                          f"{', '.join(known)}")


def _field(message: Descriptor, name: str) -> FieldDescriptor | None:
    for field in message.fields:
        if name in (field.json_name, field.name):
            return field
    return None


def _name(field: FieldDescriptor) -> str:
    return str(field.json_name)


def _describe(field: FieldDescriptor, docs: dict[str, str]) -> Field:
    text = docs.get(field.full_name, "")
    if not text and field.message_type is not None and not _is_map(field):
        text = docs.get(field.message_type.full_name, "")
    return Field(_name(field), _type(field), text)


def _is_map(field: FieldDescriptor) -> bool:
    return bool(field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry)


def _type(field: FieldDescriptor) -> str:
    if _is_map(field):
        key, value = field.message_type.fields_by_name["key"], \
            field.message_type.fields_by_name["value"]
        return f"map[{_type(key)}]{_type(value)}"
    if field.message_type is not None:
        name = field.message_type.full_name
        single = _WELL_KNOWN.get(name, field.message_type.name)
    elif field.enum_type is not None:
        single = "string"
    else:
        single = _SCALARS.get(field.type, "string")
    return f"[]{single}" if field.is_repeated else single
