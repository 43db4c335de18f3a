"""Apply of YAML text from the page, all or nothing.

Every document is parsed and decoded first, then the apiserver validates each
in a dry run, and only when all pass are they applied, in the order written: an
error anywhere applies nothing. An error names the document, the line and column
and the field path, whether the YAML did not parse, a field is unknown or of the
wrong type (the codec), or the apiserver refused a value (its field violations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dora.api import codec, errors, kinds
from dora.api.client import ApplyResult, Client
from dora.api.v1 import object_pb2

RESULT_WORDS = {
    ApplyResult.CREATED: "created",
    ApplyResult.CONFIGURED: "configured",
    ApplyResult.UNCHANGED: "unchanged",
}


class ApplyError(errors.Invalid):
    """An Invalid whose violations carry where they are in the text (``located``)."""

    def __init__(self, error: errors.DoraError, located: list[dict[str, Any]]) -> None:
        super().__init__(error.message, violations=error.violations)
        self.code = error.code
        self.located = located


@dataclass(frozen=True)
class Parsed:
    document: codec.Document
    obj: object_pb2.Object


def parse(text: str, *, source: str = "yaml") -> list[Parsed]:
    """Every object of ``text``; an ``ApplyError`` naming where the first bad one is."""
    try:
        documents = codec.load_documents(text, source=source)
    except codec.SyntaxErrorAt as exc:
        raise ApplyError(exc, [{"field": "", "description": exc.message, "document": 0,
                                "line": exc.line, "column": exc.column}]) from None
    if not documents:
        raise ApplyError(errors.Invalid("no object in the text"),
                         [{"field": "", "description": "no object in the text",
                           "document": 0, "line": 1, "column": 1}])
    parsed = []
    for index, document in enumerate(documents):
        try:
            parsed.append(Parsed(document, codec.from_dict(document.data)))
        except errors.Invalid as exc:
            raise _located(document.locate(exc), document, index) from None
    return parsed


def _located(error: errors.DoraError, document: codec.Document, index: int) -> ApplyError:
    violations = list(error.violations) or [errors.FieldViolation("", error.message)]
    located = []
    for violation in violations:
        line, column = document.position(violation.field)
        located.append({"field": violation.field, "description": violation.description,
                        "document": index, "line": line, "column": column})
    return ApplyError(error, located)


def fill_scope(obj: object_pb2.Object, zone: str, workspace: str) -> None:
    """The page's zone and workspace for an object that names none."""
    kind = kinds.get(obj.kind)
    if kind.zoned and not obj.metadata.zone and zone:
        obj.metadata.zone = zone
    if kind.workspaced and not obj.metadata.workspace and workspace:
        obj.metadata.workspace = workspace


async def apply_text(client: Client, text: str, *, zone: str = "", workspace: str = "",
                     dry_run: bool = False) -> list[dict[str, Any]]:
    """Apply every object of ``text``, or none; what each became."""
    parsed = parse(text)
    for item in parsed:
        fill_scope(item.obj, zone, workspace)
    outcomes = []
    for index, item in enumerate(parsed):
        try:
            outcomes.append(await client.apply(item.obj, dry_run=True))
        except errors.Invalid as exc:
            raise _located(exc, item.document, index) from None
    if not dry_run:
        outcomes = [await client.apply(item.obj) for item in parsed]
    return [{"object": codec.to_dict(applied), "result": RESULT_WORDS.get(result, "applied")}
            for applied, result in outcomes]
