"""Label selectors, in Kubernetes' syntax: ``app=web,tier!=db,env in (a,b),!legacy``.

A selector is parsed once into requirements and then matched against many label
maps, on the server (List, Watch) and in controllers' caches alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from dora.api import errors

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


EVERYTHING = Selector()


def parse(text: str) -> Selector:
    """Parse a selector; an empty text selects everything."""
    if not text.strip():
        return EVERYTHING
    return Selector(tuple(_requirement(part) for part in _split(text)))


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _requirement(part: str) -> Requirement:
    if match := _SET.match(part):
        values = [v.strip() for v in match["values"].split(",") if v.strip()]
        if not values or not all(_VALUE_RE.match(v) for v in values):
            raise _bad(part)
        op = "in" if match["op"] == "in" else "notin"
        return Requirement(match["key"], op, frozenset(values))
    if match := _EQ.match(part):
        op = "notin" if match["op"] == "!=" else "in"
        return Requirement(match["key"], op, frozenset([match["value"]]))
    if match := _EXISTS.match(part):
        return Requirement(match["key"], "!exists" if match["neg"] else "exists")
    raise _bad(part)


def _bad(part: str) -> errors.Invalid:
    return errors.Invalid(f"cannot parse {part.strip()!r}", field="labelSelector")
