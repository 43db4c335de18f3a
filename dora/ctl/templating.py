"""The old CLI's templating: ``apply -f wk.yaml -e IMAGE=ubuntu`` turns ``$IMAGE`` into ``ubuntu``.

Substitution happens in the YAML text, before it is parsed, so a value may stand
for any scalar (``count: $REPLICAS`` becomes the integer 2), but only inside the
values: keys and comments are left alone, found with the YAML scanner rather than
a regular expression over the whole text. ``${KEY}`` is ``$KEY`` for when letters
follow (``${NAME}_v2``); ``$$`` is a literal ``$``. A ``$KEY`` that no ``-e`` sets
is an error naming the file, line and column, never an empty string.

Templating is on only when the command line passes ``-e``: without it a file is
applied as written, so ``get -o yaml`` output with a ``$`` in a command line
re-applies unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import yaml

from dora.api import errors

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(rf"\$(?:(?P<dollar>\$)|\{{(?P<braced>{_NAME})\}}|(?P<plain>{_NAME}))")
_TRAILING_TABS = re.compile(r"(?<=\S)[ \t]*\t[ \t]*(?=#|$)", re.MULTILINE)
_ASSIGNMENT = re.compile(rf"^(?P<key>{_NAME})=(?P<value>.*)$", re.DOTALL)


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a mapping; ValueError names the first malformed one."""
    values: dict[str, str] = {}
    for item in items:
        match = _ASSIGNMENT.match(item)
        if match is None:
            raise ValueError(f"{item!r} is not KEY=VALUE (KEY: letters, digits, _)")
        values[match["key"]] = match["value"]
    return values


def substitute(text: str, values: Mapping[str, str], *, source: str) -> str:
    """``text`` with every ``$KEY`` in its YAML values replaced by ``values[KEY]``."""
    spans = _value_spans(text)
    if spans is None:
        return text  # not YAML the scanner can read: the parser will say where
    pieces: list[str] = []
    done = 0
    for start, end in spans:
        pieces.append(text[done:start])
        pieces.append(_replace(text, start, end, values, source))
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _replace(text: str, start: int, end: int, values: Mapping[str, str], source: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        key = match["braced"] or match["plain"]
        if key not in values:
            where = _position(text, start + match.start())
            raise errors.Invalid(
                f"{source}:{where}: ${key} is not set: pass -e {key}=VALUE "
                f"(write $${key} for a literal ${key})"
            )
        return values[key]

    return _REFERENCE.sub(one, text[start:end])


def _value_spans(text: str) -> list[tuple[int, int]] | None:
    """Where the scalar values of ``text`` are (not keys, not comments), in order."""
    # The codec accepts tabs before a comment or a line's end (the seeds have
    # them), which PyYAML's scanner refuses; they become spaces one for one, so
    # the positions found in the relaxed text are those of the original.
    relaxed = _TRAILING_TABS.sub(lambda m: m.group(0).replace("\t", " "), text)
    spans = []
    after_key = False
    try:
        for token in yaml.scan(relaxed, Loader=yaml.SafeLoader):
            start, end = token.start_mark.index, token.end_mark.index
            if isinstance(token, yaml.ScalarToken) and not after_key and "$" in text[start:end]:
                spans.append((start, end))
            after_key = isinstance(token, yaml.KeyToken)
    except yaml.YAMLError:
        return None
    return spans


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{line}:{column}"
