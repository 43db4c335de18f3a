"""doractl's reading of -f: templating ($KEY), files, directories, stdin, Lists, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dora.api import codec, errors
from dora.api.v1 import object_pb2
from dora.ctl import manifests, templating
from tests.unit import seeds

TEMPLATE = """\
# $COMMENT stays: comments are not values
kind: Workload
metadata:
  name: $NAME
  labels:
    $KEY: fixed
spec:
  replica:
    count: $REPLICAS
  image:
    image: "${IMAGE}:latest"
  config:
    cmd: echo $$HOME
"""


def test_values_are_substituted_and_typed_by_the_yaml_after() -> None:
    text = templating.substitute(
        TEMPLATE, {"NAME": "blue.red", "REPLICAS": "2", "IMAGE": "ubuntu"}, source="wk.yaml"
    )
    [obj] = codec.decode_yaml(text)
    assert obj.metadata.name == "blue.red"
    assert obj.workload.spec.replica.count == 2
    assert obj.workload.spec.image.image == "ubuntu:latest"
    assert obj.workload.spec.config.cmd == "echo $HOME"
    # Keys and comments are not values: left as written.
    assert dict(obj.metadata.labels) == {"$KEY": "fixed"}
    assert text.startswith("# $COMMENT stays")


def test_an_unset_key_is_an_error_naming_file_line_column_and_key() -> None:
    with pytest.raises(errors.Invalid) as info:
        templating.substitute(TEMPLATE, {"NAME": "x", "IMAGE": "i"}, source="wk.yaml")
    assert info.value.message == (
        "wk.yaml:9:12: $REPLICAS is not set: pass -e REPLICAS=VALUE "
        "(write $$REPLICAS for a literal $REPLICAS)"
    )


def test_braced_keys_end_where_the_braces_do() -> None:
    text = templating.substitute("a: ${N}_v2 $N_v2\n", {"N": "x", "N_v2": "y"}, source="f")
    assert text == "a: x_v2 y\n"


def test_seed_tabs_before_comments_do_not_stop_templating() -> None:
    text = "kind: Zone\nmetadata:\t# a tab before the comment\n  name: $ZONE\n"
    assert "name: dc-rov-01" in templating.substitute(text, {"ZONE": "dc-rov-01"}, source="f")


def test_text_that_does_not_scan_is_left_for_the_parser_to_report() -> None:
    text = seeds.text(seeds.TABS[0])
    assert templating.substitute(text, {}, source="f") == text


@pytest.mark.parametrize("item", ["NOEQUALS", "=v", "1A=v", "A B=v"])
def test_malformed_assignments_are_refused(item: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        templating.parse_assignments([item])


def test_assignments_keep_everything_after_the_first_equals() -> None:
    assert templating.parse_assignments(["A=b=c", "E="]) == {"A": "b=c", "E": ""}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def zone(name: str) -> str:
    return f"kind: Zone\nmetadata:\n  name: {name}\n"


def names(objs: list[object_pb2.Object]) -> list[str]:
    return [o.metadata.name for o in objs]


def test_directories_are_read_sorted_and_only_their_yaml_and_json(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", zone("b"))
    write(tmp_path / "a.yml", zone("a1") + "---\n" + zone("a2"))
    write(tmp_path / "c.json", json.dumps({"kind": "Zone", "metadata": {"name": "c"}}))
    write(tmp_path / "notes.txt", "not yaml: [")
    write(tmp_path / "sub" / "d.yaml", zone("d"))
    assert names(manifests.load([str(tmp_path)])) == ["a1", "a2", "b", "c"]
    assert names(manifests.load([str(tmp_path)], recursive=True)) == ["a1", "a2", "b", "c", "d"]


def test_files_keep_the_order_given_and_dash_is_stdin(tmp_path: Path) -> None:
    second = write(tmp_path / "z.yaml", zone("second"))
    objs = manifests.load(["-", str(second)], stdin=io.StringIO(zone("first")))
    assert names(objs) == ["first", "second"]


def test_a_kubectl_list_stands_for_its_items(tmp_path: Path) -> None:
    items = [{"kind": "Zone", "metadata": {"name": n}} for n in ("a", "b")]
    path = write(tmp_path / "list.json",
                 json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
    assert names(manifests.load([str(path)])) == ["a", "b"]


def test_a_bad_list_item_names_its_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "list.yaml",
                 "kind: List\nitems:\n- kind: Zone\n  metadata: {name: a}\n"
                 "- kind: Zone\n  metadata: {name: b}\n  spec: {bogus: 1}\n")
    with pytest.raises(errors.Invalid) as info:
        manifests.load([str(path)])
    assert info.value.message.startswith(f"{path}:7: ")
    assert [v.field for v in info.value.violations] == ["items[1].spec.bogus"]


def test_tab_indentation_fails_with_file_line_and_column() -> None:
    path = seeds.DIR / seeds.TABS[0]
    with pytest.raises(errors.Invalid) as info:
        manifests.load([str(path)])
    assert info.value.message.startswith(f"{path}:17:7: ")
    assert "tabs" in info.value.message


def test_one_bad_file_fails_the_whole_read(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", zone("fine"))
    write(tmp_path / "b.yaml", "kind: Zone\nmetadata:\n  name: x\n  bogus: 1\n")
    with pytest.raises(errors.Invalid, match=r"b.yaml:4: metadata.bogus: unknown field"):
        manifests.load([str(tmp_path)])


def test_templating_applies_to_every_file(tmp_path: Path) -> None:
    path = write(tmp_path / "z.yaml", zone("$Z"))
    assert names(manifests.load([str(path)], values={"Z": "dc-rov-01"})) == ["dc-rov-01"]
    # Without values the file is read as written.
    assert names(manifests.load([str(path)])) == ["$Z"]


def test_missing_files_and_empty_inputs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.DoraError, match="no such file"):
        manifests.load([str(tmp_path / "absent.yaml")])
    write(tmp_path / "empty.yaml", "# nothing\n")
    with pytest.raises(errors.DoraError, match="no objects in"):
        manifests.load([str(tmp_path / "empty.yaml")])


def test_every_seed_file_reads() -> None:
    objs = manifests.load([str(seeds.DIR / name) for name in seeds.names()])
    assert len(objs) == sum(len(k) for k in seeds.KINDS.values())
