"""The YAML codec against the seeds' YAML, and the errors users see when it is wrong."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import yaml

from dora.api import codec, errors
from dora.api.v1 import object_pb2
from tests.unit import seeds

# --- every seed example -------------------------------------------------------------


def test_every_seed_file_is_listed() -> None:
    on_disk = {p.name for p in seeds.DIR.glob("*.yaml")}
    assert on_disk == set(seeds.KINDS) | set(seeds.TABS)


@pytest.mark.parametrize("name", seeds.params())
def test_seed_decodes(name: str) -> None:
    objects = seeds.decode(name)
    assert [o.kind for o in objects] == seeds.KINDS[name]
    for obj in objects:
        assert obj.api_version == "v1"
        assert obj.metadata.name
        assert obj.WhichOneof("body") == obj.kind.lower()


@pytest.mark.parametrize("name", seeds.params())
def test_seed_dict_round_trip(name: str) -> None:
    for obj in seeds.decode(name):
        assert codec.from_dict(codec.to_dict(obj)) == obj


@pytest.mark.parametrize("name", seeds.params())
def test_seed_yaml_round_trip(name: str) -> None:
    objects = seeds.decode(name)
    text = codec.to_yaml(objects)
    assert codec.decode_yaml(text) == objects
    # What we print is stable: printing it again gives the same text.
    assert codec.to_yaml(codec.decode_yaml(text)) == text


def test_002_repeats_001() -> None:
    pairs = [
        ("001-01-workload-simple.yaml", "002-01-workload-simple.yaml"),
        ("001-03-storage.yaml", "002-03-storage.yaml"),
        ("001-05-node.yaml", "002-06-node.yaml"),
        ("001-08-role.yaml", "002-09-role.yaml"),
        ("001-09-user.yaml", "002-10-user.yaml"),
    ]
    for first, second in pairs:
        assert seeds.decode(first) == seeds.decode(second)


# --- the seeds keep their meaning ------------------------------------------------------


def test_simple_workload() -> None:
    spec = seeds.one("001-01-workload-simple.yaml").workload.spec
    assert spec.driver == "Docker"
    # `selectors:<TAB># comment` and `image: ubuntu<TAB># comment` are valid YAML.
    assert list(spec.selectors.cpu.product_name) == ["All"]
    assert spec.selectors.cpu.count == 1
    assert not spec.selectors.HasField("gpu")
    assert spec.image.image == "ubuntu"
    assert spec.config.cmd == "/bin/bash"
    assert not spec.replica.HasField("count")


def test_complete_workload() -> None:
    obj = seeds.one("001-02-workload-complete.yaml")
    assert (obj.metadata.zone, obj.metadata.workspace, obj.metadata.name) == (
        "dc-rov-01", "amedeo.setti", "blue.red",
    )
    spec = obj.workload.spec
    assert spec.replica.count == 2
    assert spec.notify.by_email is False
    assert list(spec.selectors.gpu.product_name) == ["Quadro RTX 6000", "Tesla V100-SXM2-16GB"]
    assert spec.selectors.gpu.count == 2
    assert spec.image.pull_policy == "Always"
    assert spec.config.affinity == "Distribute"
    assert spec.config.restart_policy == "Always"
    assert spec.config.shm_size == 1_000_000_000
    home, imagenet = spec.volumes
    assert (home.name, home.target, home.workspace) == ("home", "/home", "")
    # `workspace: datasets` and `group: datasets` side by side say the same thing.
    assert (imagenet.name, imagenet.target, imagenet.workspace) == (
        "imagenetpytorch", "/imagenet", "datasets",
    )
    assert spec.network.mode == "bridge"
    (port,) = spec.network.ports
    assert (port.name, port.kind, port.protocol) == ("first", "NodePort", "tcp")
    assert (port.node_port, port.port) == (25000, 8008)


@pytest.mark.parametrize("name", ["001-04-volume.yaml", "004-06-volume.yaml"])
def test_group_becomes_workspace(name: str) -> None:
    obj = seeds.one(name)
    assert obj.metadata.workspace == "amedeo.setti"
    assert "group" not in codec.to_dict(obj)["metadata"]
    assert codec.to_dict(obj)["metadata"]["workspace"] == "amedeo.setti"


def test_volume_local_path() -> None:
    spec = seeds.one("002-05-volume-localpath.yaml").volume.spec
    assert spec.storage == "dora.storage.01"
    assert spec.local_path == "/my/very/special/path"


def test_storage() -> None:
    obj = seeds.one("001-03-storage.yaml")
    assert obj.metadata.zone == "dc-rov-01"
    spec = obj.storage.spec
    assert (spec.endpoint, spec.mountpath, spec.kind) == (
        "10.10.10.1", "/dora-storage-01/share-01", "NFS",
    )


def test_node() -> None:
    obj = seeds.one("001-05-node.yaml")
    # `name: emcprom09<TAB>`: the tab is trailing space, not part of the name.
    assert (obj.metadata.zone, obj.metadata.name) == ("dc-rov-01", "emcprom09")
    spec = obj.node.spec
    assert spec.scheduling_disabled is False
    assert spec.endpoint == "https://10.10.10.2:3001"
    assert list(spec.allow) == ["CPUWorkload", "GPUWorkload"]


def test_nodes_file_holds_two_nodes() -> None:
    first, second = seeds.decode("004-03-nodes.yaml")
    assert (first.metadata.name, list(first.node.spec.allow)) == ("node1", ["CPUWorkload"])
    assert (second.metadata.name, list(second.node.spec.allow)) == ("node2", ["GPUWorkload"])
    assert second.node.spec.endpoint == "https://10.10.10.42:3001"


def test_zone_and_workspace() -> None:
    assert seeds.one("001-07-zone.yaml").zone.spec.endpoint == "https://mydora1.doracluster.com"
    assert seeds.one("001-06-workspace.yaml").metadata.name == "amedeo.setti"


def test_role_verbs() -> None:
    permission = seeds.one("001-08-role.yaml").role.spec.permission
    assert list(permission["Workload"].verbs) == [
        "Apply", "Delete", "Get", "Describe", "Pause", "Resume", "Event", "Version",
    ]
    assert list(permission["Volume"].verbs) == [
        "Get", "Describe", "Use", "Upload", "Download", "Ls", "Sync",
    ]
    assert list(permission["User"].verbs) == ["Credits"]
    assert set(permission) == {
        "Workload", "Container", "Volume", "Project", "Storage", "CPU", "GPU",
        "Resourcecredit", "Usercredit", "Workspace", "User",
    }
    assert codec.to_dict(seeds.one("001-08-role.yaml"))["spec"]["permission"]["User"] == [
        "Credits"
    ]


def test_user() -> None:
    spec = seeds.one("001-09-user.yaml").user.spec
    assert (spec.defaults.zone, spec.defaults.workspace) == ("dc-rov-01", "amedeo.setti")
    assert [(r.kind, r.zone, r.workspace, r.role) for r in spec.resources] == [
        ("All", "All", "amedeo.setti", "user"),
        ("Volume", "All", "datasets", "user"),
    ]
    assert [(c.zone, c.weekly) for c in spec.credits] == [("dc-rov-01", 500), ("dc-test-01", 100)]
    assert "default" in codec.to_dict(seeds.one("001-09-user.yaml"))["spec"]


def test_node_user_has_no_defaults() -> None:
    role, user = seeds.decode("004-02-node-role.yaml")
    assert list(role.role.spec.permission["Node"].verbs) == ["report"]
    assert not user.user.spec.HasField("defaults")
    assert user.user.spec.resources[0].role == "node-rep"


@pytest.mark.parametrize(
    ("name", "zone"),
    [("001-10-resourcecredit.yaml", "dc-rov-01"), ("004-07-resourcecredit.yaml", "")],
)
def test_resourcecredit(name: str, zone: str) -> None:
    obj = seeds.one(name)
    assert obj.metadata.name == "Tesla V100-SXM2-16GB"
    assert obj.metadata.zone == zone
    spec = obj.resourcecredit.spec
    assert spec.product_name == "Tesla V100-SXM2-16GB"
    assert spec.credit.per.hour == 2.5
    # The seeds print the euro sign's UTF-8 bytes read as cp1252; kept as written.
    assert spec.annotations["priceUnit"] == "€".encode().decode("cp1252")
    assert "priceUnit: " + "€".encode().decode("cp1252") in codec.to_yaml([obj])


def test_null_map_value_is_unset() -> None:
    obj = codec.decode_yaml(
        "kind: Resourcecredit\nmetadata: {name: a}\nspec:\n  annotations:\n    priceUnit:\n"
    )[0]
    assert obj.resourcecredit.spec.annotations.get("priceUnit", "") == ""


# --- tabs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", seeds.TABS)
def test_tab_indentation_is_a_located_error(name: str) -> None:
    text = seeds.text(name)
    with pytest.raises(errors.Invalid) as caught:
        codec.decode_yaml(text, source=name)
    message = caught.value.message
    match = re.match(rf"^{re.escape(name)}:(\d+):(\d+): ", message)
    assert match, message
    line, column = int(match[1]), int(match[2])
    # The first tab used as indentation: `      <TAB>- Quadro RTX 6000`.
    assert (line, column) == (17, 7)
    assert text.splitlines()[line - 1][column - 1] == "\t"
    assert "tabs" in message
    assert "Traceback" not in message
    assert not isinstance(caught.value, yaml.YAMLError)


def test_tabs_and_spaces_copies_say_the_same() -> None:
    spaced = seeds.text("001-02-workload-complete.yaml")
    tabbed = seeds.text("001-02-workload-complete-tabs.yaml")
    assert "\t" in tabbed
    assert "\t" not in spaced

    def words(text: str) -> list[str]:
        return [w for line in text.splitlines() for w in line.split("#")[0].split()]

    assert words(spaced) == words(tabbed)


def test_trailing_tabs_before_comments_are_spaces() -> None:
    (obj,) = codec.decode_yaml(
        "kind: Zone\t\nmetadata:\t# the metadata\n  name: a\t\t\nspec:\n  endpoint: x\t# e\n"
    )
    assert (obj.metadata.name, obj.zone.spec.endpoint) == ("a", "x")


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(errors.Invalid) as caught:
        codec.decode_yaml("kind: Zone\nmetadata: {name: a\n", source="z.yaml")
    assert re.match(r"^z\.yaml:\d+:\d+: ", caught.value.message)
    assert "tabs" not in caught.value.message


# --- errors name the field and its line --------------------------------------------

_WORKLOAD = "apiVersion: v1\nkind: Workload\nmetadata:\n  name: a\nspec:\n"


@pytest.mark.parametrize(
    ("text", "field", "line", "fragment"),
    [
        (_WORKLOAD + "  config:\n    shmSizee: 1\n", "spec.config.shmSizee", 7, "unknown field"),
        (
            _WORKLOAD + "  config:\n    shmSize: big\n",
            "spec.config.shmSize", 7, "spec.config.shmSize: expected an integer",
        ),
        (
            _WORKLOAD + "  volumes:\n    - name: home\n      target: 3\n",
            "spec.volumes[0].target", 8, "expected a string",
        ),
        (
            _WORKLOAD + "  volumes:\n    - name: a\n    - name: b\n      target: [x]\n",
            "spec.volumes[1].target", 9, "expected a string, not a list",
        ),
        (
            _WORKLOAD + "  selectors:\n    gpu:\n      product_name: [A100, 7]\n",
            "spec.selectors.gpu.product_name[1]", 8, "expected a string",
        ),
        (_WORKLOAD + "  replica: {count: 1.5}\n", "spec.replica.count", 6, "expected an integer"),
        (_WORKLOAD + "  replica: {count: true}\n", "spec.replica.count", 6, "expected an integer"),
        (_WORKLOAD + "  replica: {count: 9999999999}\n", "spec.replica.count", 6, "out of range"),
        (_WORKLOAD + "  notify: {byEmail: 'no'}\n", "spec.notify.byEmail", 6, "true or false"),
        (_WORKLOAD + "  volumes: {name: home}\n", "spec.volumes", 6, "expected a list"),
        (_WORKLOAD + "  config: /bin/bash\n", "spec.config", 6, "expected a mapping"),
        ("kind: Pod\nmetadata:\n  name: a\n", "kind", 1, "unknown kind 'Pod'"),
        ("apiVersion: apps/v1\nkind: Workload\n", "apiVersion", 1, "unsupported apiVersion"),
        ("apiVersion: v1\nmetadata:\n  name: a\n", "kind", 1, "kind: required"),
        ("kind: Zone\nmetadata:\n  name: a\n  nmae: b\n", "metadata.nmae", 4, "unknown field"),
        ("kind: Zone\nmetadata: {name: a}\nstatus: {}\n", "status", 3, "has no status"),
        ("kind: Zone\nmetadata: {name: a}\nspce: {}\n", "spce", 3, "unknown field"),
        (
            "kind: Workload\nmetadata:\n  group: a\n  workspace: b\n",
            "metadata.workspace", 4, "conflicts with metadata.group",
        ),
        (
            "kind: Role\nmetadata: {name: r}\nspec:\n  permission:\n    Workload: [Get, 3]\n",
            "spec.permission.Workload[1]", 5, "expected a string",
        ),
        (
            "kind: Zone\nmetadata:\n  name: a\n  creationTimestamp: yesterday\n",
            "metadata.creationTimestamp", 4, "RFC 3339",
        ),
    ],
)
def test_error_names_field_and_line(text: str, field: str, line: int, fragment: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        codec.decode_yaml(text, source="in.yaml")
    error = caught.value
    assert [v.field for v in error.violations] == [field]
    assert error.message.startswith(f"in.yaml:{line}: {field}: "), error.message
    assert fragment in error.message


@pytest.mark.parametrize(("text", "what"), [("- a\n- b\n", "a list"), ("hello\n", "string")])
def test_document_must_be_a_mapping(text: str, what: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        codec.decode_yaml(text, source="in.yaml")
    assert caught.value.message.startswith("in.yaml:1: ")
    assert "must be a mapping" in caught.value.message
    assert what in caught.value.message


def test_error_in_second_document_names_its_line() -> None:
    text = (
        "---\nkind: Zone\nmetadata:\n  name: a\n"
        "---\nkind: Node\nmetadata:\n  zone: a\n  name: n\nspec:\n  allow: CPUWorkload\n"
        "  schedulingDisabled: maybe\n"
    )
    with pytest.raises(errors.Invalid) as caught:
        codec.decode_yaml(text, source="nodes.yaml")
    assert caught.value.message.startswith("nodes.yaml:12: spec.schedulingDisabled: ")
    assert text.splitlines()[11].strip().startswith("schedulingDisabled")


def test_error_in_second_seed_document() -> None:
    text = seeds.text("004-01-zone-and-storage.yaml").replace("kind: NFS", "kind: [NFS]")
    with pytest.raises(errors.Invalid) as caught:
        codec.decode_yaml(text, source="zoneAndStorage.yaml")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "[NFS]" in s)
    assert caught.value.message.startswith(f"zoneAndStorage.yaml:{line}: spec.kind: ")


def test_from_dict_errors_carry_the_path_without_a_file() -> None:
    with pytest.raises(errors.Invalid) as caught:
        codec.from_dict({"kind": "Workload", "spec": {"config": {"shmSize": "1G"}}})
    assert caught.value.message.startswith("spec.config.shmSize: expected an integer")
    assert caught.value.violations[0].field == "spec.config.shmSize"


# --- accepted spellings --------------------------------------------------------------


def test_proto_names_and_json_names_both_work() -> None:
    by_json = codec.from_dict(
        {"kind": "Workload", "spec": {"config": {"shmSize": 5, "restartPolicy": "Always"}}}
    )
    by_proto = codec.from_dict(
        {"kind": "Workload", "spec": {"config": {"shm_size": 5, "restart_policy": "Always"}}}
    )
    assert by_json == by_proto


def test_api_version_defaults_and_aliases() -> None:
    plain = codec.from_dict({"kind": "Zone", "metadata": {"name": "a"}})
    prefixed = codec.from_dict({"apiVersion": "dora/v1", "kind": "Zone", "metadata": {"name": "a"}})
    assert plain == prefixed
    assert plain.api_version == "v1"


def test_product_name_string_or_list() -> None:
    one = codec.from_dict({"kind": "Workload", "spec": {"selectors": {"gpu": {
        "product_name": "Tesla V100-SXM2-16GB"}}}})
    many = codec.from_dict({"kind": "Workload", "spec": {"selectors": {"gpu": {
        "product_name": ["Tesla V100-SXM2-16GB"]}}}})
    assert one == many
    assert codec.to_dict(one)["spec"]["selectors"]["gpu"]["product_name"] == [
        "Tesla V100-SXM2-16GB"
    ]


def test_empty_documents_are_skipped() -> None:
    assert codec.decode_yaml("") == []
    assert codec.decode_yaml("# nothing\n---\n---\nkind: Zone\nmetadata: {name: a}\n---\n") == [
        codec.from_dict({"kind": "Zone", "metadata": {"name": "a"}})
    ]


# --- to_yaml -------------------------------------------------------------------------


def test_to_yaml_separates_documents_only_when_several() -> None:
    zone = codec.from_dict({"kind": "Zone", "metadata": {"name": "a"}})
    assert not codec.to_yaml([zone]).startswith("---")
    assert codec.to_yaml([zone, zone]).count("---") == 2
    assert codec.decode_yaml(codec.to_yaml([zone, zone])) == [zone, zone]


def test_to_yaml_round_trips_status_and_server_fields() -> None:
    node = codec.from_dict({
        "kind": "Node",
        "metadata": {
            "name": "n1", "zone": "z", "uid": "0b6c", "resourceVersion": 42, "generation": 3,
            "labels": {"rack": "r1", "gpu": "true"}, "annotations": {"note": "x: y"},
            "creationTimestamp": "2024-05-06T07:08:09.123456Z",
            "finalizers": ["dora/containers"],
            "ownerReferences": [{"kind": "Zone", "name": "z", "uid": "u", "controller": True}],
        },
        "spec": {"endpoint": "https://10.0.0.1:3001", "allow": ["GPUWorkload"]},
        "status": {
            "phase": "Ready", "memoryBytes": 2**40, "simulatedGpus": True,
            "cpu": {"product_name": "Xeon", "count": 56},
            "gpus": [{"index": 0, "uuid": "GPU-1", "product_name": "A100", "container": ""}],
            "lastSeen": "2024-05-06T07:08:10Z",
            "conditions": [{"type": "Ready", "status": "True",
                            "lastTransitionTime": "2024-05-06T07:08:10Z"}],
        },
    })
    assert node.metadata.resource_version == 42
    assert node.node.status.gpus[0].uuid == "GPU-1"
    assert codec.decode_yaml(codec.to_yaml([node])) == [node]
    assert codec.from_dict(codec.to_dict(node)) == node


def test_to_yaml_quotes_strings_that_look_like_other_types() -> None:
    obj = codec.from_dict({"kind": "Workload", "metadata": {"name": "a", "labels": {
        "on": "true", "n": "1", "f": "1.5", "e": "", "null": "null"}},
        "spec": {"config": {"cmd": "yes"}}})
    assert codec.decode_yaml(codec.to_yaml([obj])) == [obj]


def test_replica_count_zero_survives_printing() -> None:
    obj = codec.from_dict({"kind": "Workload", "spec": {"replica": {"count": 0}}})
    assert obj.workload.spec.replica.HasField("count")
    assert codec.to_dict(obj)["spec"]["replica"] == {"count": 0}
    assert codec.decode_yaml(codec.to_yaml([obj])) == [obj]


# --- timestamps ----------------------------------------------------------------------


def _zone_at(seconds: int, nanos: int) -> object_pb2.Object:
    obj = codec.from_dict({"kind": "Zone", "metadata": {"name": "a"}})
    obj.metadata.creation_timestamp.seconds = seconds
    obj.metadata.creation_timestamp.nanos = nanos
    return obj


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(0, 0), (1, 0), (1_704_164_645, 0), (1_704_164_645, 123_456_000), (1, 5_000), (-5, 0),
     (253_402_300_799, 999_999_000)],
)
def test_timestamp_round_trip(seconds: int, nanos: int) -> None:
    obj = _zone_at(seconds, nanos)
    assert codec.from_dict(codec.to_dict(obj)) == obj
    assert codec.decode_yaml(codec.to_yaml([obj])) == [obj]


def test_timestamp_printed_in_rfc3339_utc() -> None:
    assert codec.to_dict(_zone_at(1_704_164_645, 0))["metadata"]["creationTimestamp"] == (
        "2024-01-02T03:04:05Z"
    )
    assert codec.to_dict(_zone_at(1_704_164_645, 123_456_000))["metadata"][
        "creationTimestamp"
    ] == "2024-01-02T03:04:05.123456Z"


def test_server_clock_timestamps_round_trip() -> None:
    obj = codec.from_dict({"kind": "Zone", "metadata": {"name": "a"}})
    obj.metadata.creation_timestamp.FromDatetime(dt.datetime.now(dt.UTC))
    assert codec.decode_yaml(codec.to_yaml([obj])) == [obj]


@pytest.mark.parametrize(
    "written",
    [
        "2024-01-02T03:04:05Z",  # a YAML timestamp, unquoted
        "'2024-01-02T03:04:05Z'",
        "'2024-01-02T05:04:05+02:00'",
        "2024-01-02T03:04:05+00:00",
        "'2024-01-02T03:04:05'",  # no offset: UTC
    ],
)
def test_timestamp_spellings(written: str) -> None:
    text = f"kind: Zone\nmetadata:\n  name: a\n  creationTimestamp: {written}\n"
    (obj,) = codec.decode_yaml(text)
    assert obj.metadata.creation_timestamp.seconds == 1_704_164_645
    assert obj.metadata.creation_timestamp.nanos == 0


def test_date_is_not_a_timestamp() -> None:
    with pytest.raises(errors.Invalid, match=r"metadata\.creationTimestamp: expected an RFC 3339"):
        codec.decode_yaml("kind: Zone\nmetadata:\n  name: a\n  creationTimestamp: 2024-01-02\n")


def test_nanosecond_timestamp_round_trip() -> None:
    obj = _zone_at(1_704_164_645, 123_456_789)
    assert codec.from_dict(codec.to_dict(obj)) == obj


# --- duplicate keys are an error naming both lines ---------------------------------

_DUPLICATE_IMAGE = """\
kind: Workload
metadata:
  name: w
spec:
  image:
    image: busybox
    pullPolicy: Never
    image: alpine
"""


@pytest.mark.parametrize(("text", "key", "line", "column", "first"), [
    (_DUPLICATE_IMAGE, "image", 8, 5, 6),
    ("kind: Zone\nmetadata: {name: a}\nkind: Zone\n", "kind", 3, 1, 1),
    ("kind: Workload\nmetadata:\n  name: a\n  labels: {x: '1', x: '2'}\n", "x", 4, 20, 4),
    ("kind: Workload\nmetadata: {name: a}\nspec:\n  volumes:\n  - name: v\n"
     "    target: /a\n    name: v2\n", "name", 7, 5, 5),
    ("---\nkind: Zone\nmetadata: {name: a}\n---\nkind: Zone\nmetadata:\n  name: b\n"
     "  name: c\n", "name", 8, 3, 7),
])
def test_duplicate_key_names_both_lines(text: str, key: str, line: int, column: int,
                                        first: int) -> None:
    with pytest.raises(errors.Invalid) as caught:
        codec.decode_yaml(text, source="workload.yaml")
    assert caught.value.message == (
        f"workload.yaml:{line}:{column}: duplicate key {key!r} (first at line {first})")


def test_duplicate_key_with_trailing_tabs_is_still_refused() -> None:
    with pytest.raises(errors.Invalid, match="duplicate key 'name'"):
        codec.decode_yaml("kind: Zone\t# z\nmetadata:\n  name: a\t\n  name: b\n")


def test_merge_keys_may_be_overridden() -> None:
    (obj,) = codec.decode_yaml(
        "kind: Workload\nmetadata: {name: a}\nspec:\n  image: &img {image: busybox, "
        "pullPolicy: Never}\n  config:\n    <<: {cmd: 'sleep 1'}\n    cmd: 'sleep 2'\n")
    assert obj.workload.spec.config.cmd == "sleep 2"


def test_same_key_in_sibling_mappings_is_fine() -> None:
    (obj,) = codec.decode_yaml(
        "kind: Workload\nmetadata: {name: a}\nspec:\n  volumes:\n  - {name: a, target: /a}\n"
        "  - {name: b, target: /b}\n")
    assert [v.name for v in obj.workload.spec.volumes] == ["a", "b"]


def test_a_control_character_is_a_syntax_error_with_its_line_and_column() -> None:
    # PyYAML's reader refuses it before parsing (found by schemathesis through dora-web)
    with pytest.raises(codec.SyntaxErrorAt) as info:
        codec.decode_yaml("kind: Workload\nmetadata: {name: a\x90}\n", source="w.yaml")
    assert info.value.message == "w.yaml:2:19: character #x0090 is not allowed in YAML"
    assert (info.value.line, info.value.column) == (2, 19)
