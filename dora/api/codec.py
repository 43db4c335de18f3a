"""YAML and plain dicts to and from the ``Object`` envelope.

The YAML users write is the seeds' YAML: ``apiVersion: v1``, a ``kind``,
``metadata`` and the kind's ``spec`` (and ``status`` when a server prints it).
Field names are the protobuf ``json_name`` (``schedulingDisabled``,
``product_name``); the proto field name is accepted too. The decoder walks the
message descriptors rather than going through ``json_format`` because users need
errors that name the field (``spec.config.shmSize: expected an integer``) and the
line it is on, and because the seeds bend JSON mapping in three places:

- ``group`` is another word for ``workspace`` (in metadata and volume entries);
- a list of scalars may be written as one scalar (``product_name: All``);
- ``Verbs`` is written as a plain list (``Workload: [Apply, Get]``);
- ``config.env`` is written as Kubernetes does (``- {name: N, value: V}``), as
  compose does (``- N=V``, or one mapping ``{N: V}``), or as ``- N: V``; numbers
  and booleans become the strings YAML shows (``true``, ``8080``).

Encoding emits only the fields that are set, in field order, so what ``to_yaml``
prints decodes back to the same object.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from google.protobuf import descriptor, message, timestamp_pb2

from dora.api import conventions, errors, kinds
from dora.api.v1 import object_pb2

API_VERSION = "v1"
_ACCEPTED_API_VERSIONS = ("v1", "dora/v1")
_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
_ALIASES = {"group": "workspace"}
_LIST_WRAPPERS = {"dora.api.v1.Verbs": "verbs"}
_ENV_VAR = "dora.api.v1.EnvVar"
_INT32_RANGE = (-(2**31), 2**31 - 1)
_INT64_RANGE = (-(2**63), 2**63 - 1)

FD = descriptor.FieldDescriptor
# upb and pure-Python descriptors differ in type, not in behaviour.
FieldDescriptor = Any
Descriptor = Any


class Document:
    """One YAML document: its data, and where each field path starts (for errors)."""

    def __init__(self, data: Any, *, source: str, lines: dict[str, int], start: int,
                 columns: dict[str, int] | None = None) -> None:
        self.data = data
        self.source = source
        self.lines = lines
        self.columns = columns or {}
        self.start = start

    def position(self, path: str) -> tuple[int, int]:
        """The line and column (1-based; column 0 when unknown) where field ``path``, or
        the nearest field above it, is written."""
        while path:
            if path in self.lines:
                return self.lines[path], self.columns.get(path, 0)
            path = path.rpartition(".")[0] if "." in path else ""
        return self.start, 0

    def locate(self, error: errors.Invalid) -> errors.Invalid:
        """``error`` with ``file:line:`` in front, for the first field it names."""
        line = self.start
        for violation in error.violations:
            line = self._line_of(violation.field)
            break
        return errors.Invalid(f"{self.source}:{line}: {error.message}", violations=error.violations)

    def _line_of(self, path: str) -> int:
        return self.position(path)[0]


def load_documents(text: str, *, source: str = "<stdin>") -> list[Document]:
    """Parse multi-document YAML; a syntax error names the file, line and column.

    YAML allows tabs as separation space before a comment or the end of a line
    (the seeds have ``selectors:<TAB># ...``) but PyYAML refuses them; those tabs,
    and only those, become spaces. Tabs in indentation stay an error.
    """
    try:
        return _load_documents(text, source=source)
    except errors.Invalid:
        relaxed = _TRAILING_TABS.sub(lambda m: m.group(0).replace("\t", " "), text)
        if relaxed == text:
            raise
        return _load_documents(relaxed, source=source)


_TRAILING_TABS = re.compile(r"(?<=\S)[ \t]*\t[ \t]*(?=#|$)", re.MULTILINE)


def _load_documents(text: str, *, source: str) -> list[Document]:
    try:
        # The reader checks every character first: a control character is refused here.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SyntaxErrorAt(f"{source}:{line}:{column}: character #x{exc.character:04x} is not "
                            "allowed in YAML", line=line, column=column) from None
    documents: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _refuse_duplicate_keys(node, source)
            data = loader.construct_document(node)
            if data is None:
                continue
            lines: dict[str, int] = {}
            columns: dict[str, int] = {}
            _index_lines(node, "", lines, columns)
            documents.append(Document(data, source=source, lines=lines, columns=columns,
                                      start=node.start_mark.line + 1))
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, source) from None
    except yaml.YAMLError as exc:
        raise errors.Invalid(f"{source}: {exc}") from None
    finally:
        loader.dispose()
    return documents


def decode_yaml(text: str, *, source: str = "<stdin>") -> list[object_pb2.Object]:
    """Every object in a multi-document YAML text."""
    objects = []
    for document in load_documents(text, source=source):
        try:
            objects.append(from_dict(document.data))
        except errors.Invalid as exc:
            raise document.locate(exc) from None
    return objects


def from_dict(data: Any) -> object_pb2.Object:
    """The ``Object`` a YAML/JSON mapping describes."""
    if not isinstance(data, Mapping):
        raise errors.Invalid(f"an object must be a mapping, not {_type_name(data)}")
    unknown = [key for key in data if key not in _TOP_LEVEL]
    if unknown:
        raise errors.Invalid("unknown field", field=str(unknown[0]))
    api_version = data.get("apiVersion", API_VERSION)
    if api_version not in _ACCEPTED_API_VERSIONS:
        raise errors.Invalid(f"unsupported apiVersion {api_version!r}; use v1", field="apiVersion")
    kind_name = data.get("kind")
    if not isinstance(kind_name, str) or not kind_name:
        raise errors.Invalid("required", field="kind")
    kind = kinds.get(kind_name)
    obj = object_pb2.Object(api_version=API_VERSION, kind=kind.name)
    _decode_message(obj.metadata, data.get("metadata"), "metadata")
    body = getattr(obj, kind.field)
    body.SetInParent()
    for part in ("spec", "status"):
        if part not in data:
            continue
        if part not in body.DESCRIPTOR.fields_by_name:
            raise errors.Invalid(f"a {kind.name} has no {part}", field=part)
        _decode_message(getattr(body, part), data[part], part)
    return obj


def to_dict(obj: object_pb2.Object) -> dict[str, Any]:
    """The YAML/JSON mapping of ``obj``, with only the fields that are set."""
    out: dict[str, Any] = {"apiVersion": obj.api_version or API_VERSION, "kind": obj.kind}
    out["metadata"] = _encode_message(obj.metadata)
    body_field = obj.WhichOneof("body")
    if body_field is not None:
        out.update(_encode_message(getattr(obj, body_field)))
    return out


def to_yaml(objects: list[object_pb2.Object]) -> str:
    return yaml.safe_dump_all(
        [to_dict(o) for o in objects], sort_keys=False, allow_unicode=True,
        explicit_start=len(objects) > 1,
    )


def _decode_message(msg: message.Message, data: Any, path: str) -> None:
    if data is None:
        msg.SetInParent()
        return
    full_name = msg.DESCRIPTOR.full_name
    if full_name == "google.protobuf.Timestamp":
        _decode_timestamp(msg, data, path)  # type: ignore[arg-type]
        return
    if full_name in _LIST_WRAPPERS:
        _decode_field(msg, msg.DESCRIPTOR.fields_by_name[_LIST_WRAPPERS[full_name]], data, path)
        return
    if not isinstance(data, Mapping):
        raise errors.Invalid(f"expected a mapping, not {_type_name(data)}", field=path)
    msg.SetInParent()
    fields = _fields_by_key(msg.DESCRIPTOR)
    seen: dict[str, str] = {}
    for key, value in data.items():
        field_path = f"{path}.{key}"
        target = _ALIASES.get(str(key), str(key))
        field = fields.get(target) if target in fields else fields.get(str(key))
        if field is None:
            raise errors.Invalid("unknown field", field=field_path)
        if field.name in seen:
            if _plain(value) != _plain(getattr(msg, field.name)):
                raise errors.Invalid(
                    f"conflicts with {path}.{seen[field.name]}", field=field_path
                )
            continue
        seen[field.name] = str(key)
        _decode_field(msg, field, value, field_path)


def _decode_field(msg: message.Message, field: FieldDescriptor, value: Any, path: str) -> None:
    if _is_map(field):
        if value is None:
            return
        if not isinstance(value, Mapping):
            raise errors.Invalid(f"expected a mapping, not {_type_name(value)}", field=path)
        target = getattr(msg, field.name)
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            item_path = f"{path}.{key}"
            if not isinstance(key, str):
                raise errors.Invalid("keys must be strings", field=item_path)
            if item is None:
                continue
            if value_field.type == FD.TYPE_MESSAGE:
                _decode_message(target[key], item, item_path)
            else:
                target[key] = _scalar(value_field, item, item_path)
        return
    if field.is_repeated:
        if value is None:
            return
        if field.type == FD.TYPE_MESSAGE and field.message_type.full_name == _ENV_VAR:
            value = _env_items(value, path)
        items = value if isinstance(value, list) else [value]
        if field.type == FD.TYPE_MESSAGE and not isinstance(value, list):
            raise errors.Invalid(f"expected a list, not {_type_name(value)}", field=path)
        target = getattr(msg, field.name)
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            if field.type == FD.TYPE_MESSAGE:
                _decode_message(target.add(), item, item_path)
            else:
                target.append(_scalar(field, item, item_path))
        return
    if field.type == FD.TYPE_MESSAGE:
        _decode_message(getattr(msg, field.name), value, path)
        return
    if value is None:
        return
    setattr(msg, field.name, _scalar(field, value, path))


def _env_items(value: Any, path: str) -> list[Any]:
    """``config.env`` in any of its spellings, as ``{name, value}`` mappings."""
    if isinstance(value, Mapping):
        return [{"name": k, "value": _env_value(v, f"{path}.{k}")} for k, v in value.items()]
    if not isinstance(value, list):
        raise errors.Invalid(f"expected a list of NAME=VALUE or {{name, value}}, not "
                             f"{_type_name(value)}", field=path)
    items: list[Any] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if isinstance(item, str):
            name, equals, text = item.partition("=")
            if not equals:
                raise errors.Invalid(f"{item!r} is not NAME=VALUE", field=item_path)
            items.append({"name": name, "value": text})
        elif isinstance(item, Mapping) and len(item) == 1 and not {"name", "value"} & set(item):
            ((name, text),) = item.items()
            items.append({"name": name, "value": _env_value(text, f"{item_path}.{name}")})
        elif isinstance(item, Mapping) and "value" in item:
            items.append({**item, "value": _env_value(item["value"], f"{item_path}.value")})
        else:
            items.append(item)
    return items


def _env_value(value: Any, path: str) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise errors.Invalid(f"expected a string, not {_type_name(value)}", field=path)
    size = len(value.encode())
    if size > conventions.MAX_ENV_VALUE_BYTES:
        # Checked here too: a value that large would not even reach the apiserver.
        raise errors.Invalid(f"is {size} bytes; the limit is "
                             f"{conventions.MAX_ENV_VALUE_BYTES} bytes per value", field=path)
    return value


def _scalar(field: FieldDescriptor, value: Any, path: str) -> Any:
    kind = field.type
    if kind == FD.TYPE_STRING:
        if not isinstance(value, str):
            raise errors.Invalid(f"expected a string, not {_type_name(value)}", field=path)
        return value
    if kind == FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise errors.Invalid(f"expected true or false, not {_type_name(value)}", field=path)
        return value
    if kind in (FD.TYPE_INT32, FD.TYPE_INT64):
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.Invalid(f"expected an integer, not {_type_name(value)}", field=path)
        low, high = _INT32_RANGE if kind == FD.TYPE_INT32 else _INT64_RANGE
        if not low <= value <= high:
            raise errors.Invalid(f"{value} is out of range", field=path)
        return value
    if kind == FD.TYPE_DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise errors.Invalid(f"expected a number, not {_type_name(value)}", field=path)
        return float(value)
    raise errors.Invalid(f"unsupported field type {kind}", field=path)


def _decode_timestamp(msg: timestamp_pb2.Timestamp, value: Any, path: str) -> None:
    if isinstance(value, str):
        try:
            msg.FromJsonString(value)
            return
        except ValueError:
            pass
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise errors.Invalid("expected an RFC 3339 time", field=path) from None
    if not isinstance(value, dt.datetime):
        raise errors.Invalid(f"expected an RFC 3339 time, not {_type_name(value)}", field=path)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    msg.FromDatetime(value)


def _encode_message(msg: message.Message) -> Any:
    full_name = msg.DESCRIPTOR.full_name
    if full_name == "google.protobuf.Timestamp":
        return _format_timestamp(msg)  # type: ignore[arg-type]
    if full_name in _LIST_WRAPPERS:
        return list(getattr(msg, _LIST_WRAPPERS[full_name]))
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        out[field.json_name] = _encode_value(field, value)
    return out


def _encode_value(field: FieldDescriptor, value: Any) -> Any:
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        if value_field.type == FD.TYPE_MESSAGE:
            return {k: _encode_message(v) for k, v in sorted(value.items())}
        return dict(sorted(value.items()))
    if field.is_repeated:
        if field.type == FD.TYPE_MESSAGE:
            return [_encode_message(v) for v in value]
        return list(value)
    if field.type == FD.TYPE_MESSAGE:
        return _encode_message(value)
    return value


def _format_timestamp(ts: timestamp_pb2.Timestamp) -> str:
    return ts.ToJsonString()


def _fields_by_key(desc: Descriptor) -> dict[str, FieldDescriptor]:
    fields: dict[str, FieldDescriptor] = {}
    for field in desc.fields:
        fields[field.name] = field
        fields[field.json_name] = field
    return fields


def _is_map(field: FieldDescriptor) -> bool:
    return bool(field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry)


def _plain(value: Any) -> Any:
    return value if not isinstance(value, message.Message) else value.SerializeToString()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int],
                 columns: dict[str, int]) -> None:
    """Record the line and column (1-based) of every field path in a composed YAML
    node tree."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            lines[child] = key_node.start_mark.line + 1
            columns[child] = key_node.start_mark.column + 1
            _index_lines(value_node, child, lines, columns)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            lines[child] = item.start_mark.line + 1
            columns[child] = item.start_mark.column + 1
            _index_lines(item, child, lines, columns)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _refuse_duplicate_keys(root: yaml.Node, source: str) -> None:
    """Refuse a mapping that names a key twice, naming both lines.

    YAML says keys are unique; PyYAML keeps the last silently, so a field written
    twice (one forgotten above, one added below) was applied half-seen. Keys merged
    in with ``<<`` may be overridden, as YAML allows: only keys written in the same
    mapping count. Anchored nodes are walked once.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key_node, value_node in node.value:
                stack.append(value_node)
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = str(key_node.value)
                if key in first:
                    mark = key_node.start_mark
                    raise SyntaxErrorAt(
                        f"{source}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r} "
                        f"(first at line {first[key].start_mark.line + 1})",
                        line=mark.line + 1, column=mark.column + 1)
                first[key] = key_node
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


class SyntaxErrorAt(errors.Invalid):
    """YAML that does not parse, with where (1-based; 0 when unknown), for a page to
    point at."""

    def __init__(self, message: str, *, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def _syntax_error(exc: yaml.MarkedYAMLError, source: str) -> errors.Invalid:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = exc.problem or exc.context or "invalid YAML"
    if "\\t" in problem or "\t" in problem:
        problem += " (YAML indents with spaces, never tabs)"
    return SyntaxErrorAt(f"{where}: {problem}", line=mark.line + 1 if mark else 0,
                         column=mark.column + 1 if mark else 0)


def iter_field_paths(data: Any, path: str = "") -> Iterator[str]:
    """Every leaf path of a plain mapping, for tests and diffs."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from iter_field_paths(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from iter_field_paths(value, f"{path}[{index}]")
    else:
        yield path
