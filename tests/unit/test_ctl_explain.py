"""``doractl explain``: kinds and field paths, documented from the protos' comments
(``dora/api/v1/descriptors.binpb``), with YAML's field names."""

from __future__ import annotations

import pytest

from dora.api import errors
from dora.ctl import explain


def test_a_kind_lists_the_yaml_top_level_and_the_kinds_comment() -> None:
    text = explain.explain("workloads").text()
    assert "KIND:     Workload" in text
    assert 'Workload: what the user wants to run (seed 001 "Workloads").' in text
    fields = [line.split("\t")[0].strip() for line in text.splitlines() if "\t<" in line]
    assert fields == ["apiVersion", "kind", "metadata", "spec", "status"]


def test_a_field_path_in_yaml_names_shows_type_comment_and_sub_fields() -> None:
    found = explain.explain("wk.spec.image")
    assert (found.path, found.type) == ("spec.image", "ImageSpec")
    by_name = {f.name: f for f in found.fields}
    assert by_name["pullPolicy"].description == "Always, IfNotPresent (default) or Never."
    # the proto's own name works as well as the json_name
    assert explain.explain("wk.spec.image.pull_policy").path == "spec.image.pull_policy"


@pytest.mark.parametrize(("target", "kind", "type_name"), [
    ("wk.spec.replica.count", "Workload", "integer"),
    ("node.status.gpus", "Node", "[]GPUInfo"),
    ("wk.metadata.labels", "Workload", "map[string]string"),
    ("c.status.startedAt", "Container", "string (RFC 3339 time)"),
    ("node.spec.schedulingDisabled", "Node", "boolean"),
    ("role.spec.permission", "Role", "map[string][]string"),
])
def test_types_are_written_as_in_yaml(target: str, kind: str, type_name: str) -> None:
    found = explain.explain(target)
    assert (found.kind, found.type) == (kind, type_name)


def test_recursive_drops_the_descriptions() -> None:
    found = explain.explain("wk.spec.replica")
    assert "Unset means 1" in found.text()
    assert "count\t<integer>" in found.text(recursive=True)
    assert "Unset means 1" not in found.text(recursive=True)


@pytest.mark.parametrize(("target", "message"), [
    ("pods", "unknown resource type 'pods'"),
    ("wk.spec.nope", "spec has no field 'nope'; its fields: replica, driver"),
    ("wk.nope", "Workload has no field 'nope'; its fields: apiVersion, kind, metadata"),
    ("wk.spec.stopped.x", "spec.stopped is boolean: it has no field 'x'"),
    ("wk.metadata.labels.app", "metadata.labels is map[string]string"),
    ("wk..spec", "an empty field name"),
])
def test_unknown_paths_name_where_they_went_wrong(target: str, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        explain.explain(target)
