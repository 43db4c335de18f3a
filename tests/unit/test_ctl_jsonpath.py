"""kubectl's JSONPath subset (``dora.ctl.jsonpath``): paths, ranges, literals, custom
columns, sort keys, and the errors for what is not supported."""

from __future__ import annotations

import pytest

from dora.api import errors
from dora.ctl import jsonpath

DATA = {
    "kind": "List",
    "items": [
        {"metadata": {"name": "web", "labels": {"app": "web", "dora.io/node": "n1"}},
         "spec": {"replica": {"count": 2}}, "status": {"phase": "Running"}},
        {"metadata": {"name": "db", "labels": {"app": "db"}},
         "spec": {"replica": {"count": 10}, "stopped": True}},
    ],
}


@pytest.mark.parametrize(("template", "expected"), [
    ("{.kind}", "List"),
    ("{$.kind}", "List"),
    ("{.items[*].metadata.name}", "web db"),
    ("{.items[0].metadata.name}", "web"),
    ("{.items[-1].metadata.name}", "db"),
    ("{.items[5].metadata.name}", ""),
    ("{.items[*].status.phase}", "Running"),
    ("{.items[0].metadata.labels['dora.io/node']}", "n1"),
    ('{.items[0].metadata.labels["app"]}', "web"),
    ("{.items[1].spec.stopped}", "true"),
    ("{.items[0].spec.replica}", '{"count":2}'),
    ("names: {.items[*].metadata.name}!", "names: web db!"),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.spec.replica.count}{"\\n"}{end}',
     "web\t2\ndb\t10\n"),
    ("{range .items[*]}[{range .metadata.labels.*}{.}{end}]{end}", "[webn1][db]"),
    ("{.missing.key}", ""),
    ("{'a}b'}", "a}b"),
])
def test_templates_render_as_kubectl_does(template: str, expected: str) -> None:
    assert jsonpath.render(jsonpath.parse(template), DATA) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{.items[?(@.x)]}", "is not supported"),
    ("{..name}", "recursive descent"),
    ("{.items[*]", "unclosed '{'"),
    ("{range .items[*]}{.x}", "{range} without {end}"),
    ("{end}", "{end} without {range}"),
    ("a}", "unmatched '}'"),
    ("{.items[1:2]}", "is not supported"),
])
def test_unsupported_or_malformed_templates_are_refused(template: str, message: str) -> None:
    with pytest.raises(errors.Invalid) as refused:
        jsonpath.parse(template)
    assert message in refused.value.message


def test_custom_columns_and_sort_keys() -> None:
    cols = jsonpath.parse_columns("NAME:.metadata.name,REPLICAS:{.spec.replica.count},"
                                  "PHASE:.status.phase")
    assert [c.header for c in cols] == ["NAME", "REPLICAS", "PHASE"]
    assert [[jsonpath.cell(c, item) for c in cols] for item in DATA["items"]] == [
        ["web", "2", "Running"], ["db", "10", "<none>"]]
    with pytest.raises(errors.Invalid) as refused:
        jsonpath.parse_columns("NAME")
    assert "expected HEADER:.path" in refused.value.message
    by_count = sorted(DATA["items"], key=jsonpath.sort_key(jsonpath.sort_path(
        ".spec.replica.count")))
    assert [i["metadata"]["name"] for i in by_count] == ["web", "db"]  # 2 < 10: numbers
    by_name = sorted(DATA["items"], key=jsonpath.sort_key(jsonpath.sort_path(
        "{.metadata.name}")))
    assert [i["metadata"]["name"] for i in by_name] == ["db", "web"]
    by_phase = sorted(DATA["items"], key=jsonpath.sort_key(jsonpath.sort_path(
        ".status.phase")))
    assert [i["metadata"]["name"] for i in by_phase] == ["db", "web"]  # missing first
