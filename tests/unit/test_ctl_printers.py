"""doractl's output: ages, the tables of every kind (plain, as a pipe sees them),
YAML/JSON/name, watch rows, errors and describe."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest

from dora.api import codec, errors, kinds, objects
from dora.api.v1 import object_pb2
from dora.ctl import columns, humanize, printers
from dora.ctl.commands import describe
from dora.ctl.options import Output

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(**delta: float) -> str:
    return (NOW - dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def obj(data: dict[str, Any]) -> object_pb2.Object:
    return codec.from_dict(data)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (-0.5, "0s"), (0, "0s"), (12, "12s"), (59, "59s"), (60, "1m"),
     (300, "5m"), (3599, "59m"), (3600, "1h"), (86399, "23h"), (86400, "1d"),
     (86400 * 364, "364d"), (86400 * 800, "2y")],
)
def test_durations_read_like_kubectl(seconds: float, text: str) -> None:
    assert humanize.duration(dt.timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "now"), (1.5, "now"), (12, "12s"), (300, "5m"), (7200, "2h")]
)
def test_last_seen_is_now_while_the_agent_reports(seconds: float, text: str) -> None:
    assert humanize.last_seen(NOW - dt.timedelta(seconds=seconds), now=NOW) == text


def test_never_seen_and_unknown_ages() -> None:
    assert humanize.last_seen(None, now=NOW) == "never"
    assert humanize.age(None, now=NOW) == "<unknown>"


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0B"), (1023, "1023B"), (1024, "1Ki"), (1536, "1.5Ki"), (16 * 2**30, "16Gi"),
     (17_179_869_184 - 2**28, "15.8Gi"), (300 * 2**40, "300Ti"), (2**60, "1024Pi")],
)
def test_sizes_in_binary_units(count: int, text: str) -> None:
    assert humanize.size(count) == text


@pytest.mark.parametrize(("text", "seconds"), [("30", 30), ("30s", 30), ("500ms", 0.5),
                                               ("2m", 120), ("1h", 3600), ("1.5m", 90)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert humanize.parse_duration(text) == seconds


def test_bad_durations_do_not_parse() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        humanize.parse_duration("soon")


def node(name: str, **status: Any) -> object_pb2.Object:
    return obj({
        "kind": "Node",
        "metadata": {"name": name, "zone": "dora-cluster-1", "creationTimestamp": ago(days=3)},
        "spec": {"endpoint": f"https://10.10.10.4{name[-1]}:3001", "allow": ["GPUWorkload"]},
        "status": status,
    })


NODES = [
    node("node1", phase="Ready", lastSeen=ago(seconds=0.4), agentVersion="0.8.0",
         memoryBytes=256 * 2**30,
         cpu={"product_name": "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz", "count": 56}),
    node("node2", phase="Ready", lastSeen=ago(seconds=12), agentVersion="0.8.0",
         cpu={"product_name": "AMD EPYC 7742", "count": 128},
         gpus=[{"index": 0, "product_name": "Tesla V100-SXM2-16GB", "container": "c1"},
               {"index": 1, "product_name": "Tesla V100-SXM2-16GB"}]),
    node("node3", phase="NotReady", lastSeen=ago(minutes=5), agentVersion="0.8.0",
         simulatedGpus=True, cpu={"product_name": "AMD EPYC 7742", "count": 8},
         gpus=[{"index": i, "product_name": p} for i, p in
               enumerate(["Quadro RTX 6000", "Quadro RTX 6000", "Tesla T4"])]),
    node("node4"),
]


def table(objs: list[object_pb2.Object], output: Output = Output.table, **kw: Any) -> str:
    out = io.StringIO()
    printers.print_objects(objs, output, kind=objs[0].kind, now=NOW, out=out, **kw)
    return out.getvalue()


def test_nodes_table_is_the_old_clis() -> None:
    NODES[3].node.spec.scheduling_disabled = True
    assert table(NODES) == (
        "KIND   ZONE             NAME    ENDPOINT                   CPU                                           GPU                                        LASTSEEN   STATUS                       VERSION\n"  # noqa: E501
        "node   dora-cluster-1   node1   https://10.10.10.41:3001   56xIntel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz   -                                          now        Ready                        0.8.0\n"  # noqa: E501
        "node   dora-cluster-1   node2   https://10.10.10.42:3001   128xAMD EPYC 7742                             2xTesla V100-SXM2-16GB                     12s        Ready                        0.8.0\n"  # noqa: E501
        "node   dora-cluster-1   node3   https://10.10.10.43:3001   8xAMD EPYC 7742                               2xQuadro RTX 6000,1xTesla T4 (simulated)   5m         NotReady                     0.8.0\n"  # noqa: E501
        "node   dora-cluster-1   node4   https://10.10.10.44:3001   -                                             -                                          never      Unknown,SchedulingDisabled   <none>\n"  # noqa: E501
    )


def test_nodes_wide_table_adds_memory_free_gpus_allow_and_age() -> None:
    assert table(NODES[:2], Output.wide) == (
        "KIND   ZONE             NAME    ENDPOINT                   CPU                                           GPU                      LASTSEEN   STATUS   VERSION   MEMORY   GPUS FREE   ALLOW         AGE\n"  # noqa: E501
        "node   dora-cluster-1   node1   https://10.10.10.41:3001   56xIntel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz   -                        now        Ready    0.8.0     256Gi    -           GPUWorkload   3d\n"  # noqa: E501
        "node   dora-cluster-1   node2   https://10.10.10.42:3001   128xAMD EPYC 7742                             2xTesla V100-SXM2-16GB   12s        Ready    0.8.0     -        1/2         GPUWorkload   3d\n"  # noqa: E501
    )


def workload(name: str, *, ready: int = 0, observed: int = 1, created: float = 300,
             **spec: Any) -> object_pb2.Object:
    spec.setdefault("image", {"image": "ubuntu"})
    return obj({
        "kind": "Workload",
        "metadata": {"name": name, "zone": "dc-rov-01", "workspace": "amedeo.setti",
                     "generation": 1, "creationTimestamp": ago(seconds=created)},
        "spec": spec,
        "status": {"readyReplicas": ready, "observedGeneration": observed},
    })


WORKLOADS = [
    workload("blue.red", ready=2, replica={"count": 2}, created=7200,
             selectors={"gpu": {"product_name": ["Quadro RTX 6000", "Tesla V100-SXM2-16GB"],
                                "count": 2}}),
    workload("train", ready=1, replica={"count": 4}, image={"image": "pytorch/pytorch:2.3"},
             selectors={"cpu": {"millicores": 500}}),
    workload("idle", replica={"count": 0}, created=40),
    workload("paused", replica={"count": 3}, stopped=True, created=86400 * 2),
    workload("fresh", observed=0, created=1),
]


def test_workloads_table() -> None:
    assert table(WORKLOADS) == (
        "NAME       ZONE        WORKSPACE      REPLICAS   IMAGE                 STATUS        AGE\n"
        "blue.red   dc-rov-01   amedeo.setti   2/2        ubuntu                Running       2h\n"
        "train      dc-rov-01   amedeo.setti   1/4        pytorch/pytorch:2.3   Progressing   5m\n"
        "idle       dc-rov-01   amedeo.setti   0/0        ubuntu                Idle          40s\n"
        "paused     dc-rov-01   amedeo.setti   0/0        ubuntu                Stopped       2d\n"
        "fresh      dc-rov-01   amedeo.setti   0/1        ubuntu                Pending       1s\n"
    )


def test_workloads_wide_table_shows_what_they_ask_for() -> None:
    header, blue, train = table(WORKLOADS[:2], Output.wide).splitlines()
    assert header.endswith("AGE   RESOURCES                                      VERSION   "
                           "RESTART   LABELS")
    assert "   gpu 2x[Quadro RTX 6000|Tesla V100-SXM2-16GB]   " in blue
    assert "   cpu 500m   " in train


def container(name: str, workload_name: str, **status: Any) -> object_pb2.Object:
    node_name = status.pop("node", "")
    return obj({
        "kind": "Container",
        "metadata": {"name": name, "zone": "dc-rov-01", "workspace": "amedeo.setti",
                     "creationTimestamp": ago(minutes=3),
                     "ownerReferences": [{"kind": "Workload", "name": workload_name,
                                          "uid": "uid-" + workload_name, "controller": True}]},
        "spec": {"workload": workload_name, "version": 1, "nodeName": node_name,
                 "gpus": [{"index": 0}, {"index": 1}] if node_name else []},
        "status": status,
    })


CONTAINERS = [
    container("blue.red-7f2c1", "blue.red", node="node2", phase="Running"),
    container("blue.red-9a0d4", "blue.red", node="node3", phase="Failed", reason="ImagePullError"),
    container("train-00b1e", "train"),
]


def test_containers_table() -> None:
    assert table(CONTAINERS) == (
        "NAME             WORKLOAD   NODE     PHASE     REASON           AGE\n"
        "blue.red-7f2c1   blue.red   node2    Running   <none>           3m\n"
        "blue.red-9a0d4   blue.red   node3    Failed    ImagePullError   3m\n"
        "train-00b1e      train      <none>   Pending   <none>           3m\n"
    )


def test_tables_without_headers() -> None:
    assert table(CONTAINERS[:1], show_headers=False) == (
        "blue.red-7f2c1   blue.red   node2   Running   <none>   3m\n"
    )


@pytest.mark.parametrize("kind", [k.name for k in kinds.KINDS])
def test_every_kind_has_a_table_that_renders_an_empty_object(kind: str) -> None:
    empty = object_pb2.Object(kind=kind)
    empty.metadata.name = "x"
    lines = table([empty]).splitlines()
    assert len(lines) == 2
    if kind != "Event":  # events are known by what they are about, not by name
        assert "x" in lines[1].split()
    assert len(table([empty], Output.wide).splitlines()) == 2


def test_name_yaml_and_json_outputs() -> None:
    two = CONTAINERS[:2]
    assert printers.serialize(two, Output.name) == (
        "container/blue.red-7f2c1\ncontainer/blue.red-9a0d4\n"
    )
    assert codec.decode_yaml(printers.serialize(two, Output.yaml)) == two
    assert codec.decode_yaml(printers.serialize(two[:1], Output.yaml)) == two[:1]
    listed = json.loads(printers.serialize(two, Output.json))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == [
        "blue.red-7f2c1", "blue.red-9a0d4"
    ]
    assert json.loads(printers.serialize(two[:1], Output.json, single=True))["kind"] == "Container"


def test_watch_rows_widen_as_they_come() -> None:
    out = io.StringIO()
    stream = printers.RowStream(["NAME", "PHASE"], out=out)
    stream.start([["a", "Pending"]])
    stream.add(["a-much-longer-name", "Running"])
    stream.add(["b", "Failed"])
    assert out.getvalue() == (
        "NAME   PHASE\n"
        "a      Pending\n"
        "a-much-longer-name   Running\n"
        "b                    Failed\n"
    )


def test_errors_print_their_message_and_the_fields_it_does_not_name() -> None:
    invalid = errors.Invalid.of([errors.FieldViolation("spec.replica.count", "must be >= 0")])
    assert printers.error_text(invalid, about="workload/x") == (
        "error: workload/x: spec.replica.count: must be >= 0"
    )
    scoped = errors.NotFound("zone 'z' does not exist",
                             violations=(errors.FieldViolation("metadata.zone", "missing"),))
    assert printers.error_text(scoped) == (
        "error: zone 'z' does not exist\n  metadata.zone: missing"
    )


def test_describe_a_workload_with_its_containers() -> None:
    blue = WORKLOADS[0]
    blue.metadata.labels["team"] = "vision"
    blue.metadata.uid = "uid-blue.red"
    blue.metadata.resource_version = 42
    condition = blue.workload.status.conditions.add(type="Ready", status="True",
                                                    reason="AllReplicasReady")
    condition.last_transition_time.FromDatetime(NOW - dt.timedelta(minutes=10))
    text = describe.render(blue, now=NOW, containers=CONTAINERS[:2])
    assert text == """\
Name:               blue.red
Kind:               Workload
Zone:               dc-rov-01
Workspace:          amedeo.setti
Labels:             team=vision
Annotations:        <none>
UID:                uid-blue.red
Resource Version:   42
Generation:         1
Created:            2024-05-01T10:00:00Z (2h ago)
Spec:
  replica:
    count: 2
  selectors:
    gpu:
      product_name:
      - Quadro RTX 6000
      - Tesla V100-SXM2-16GB
      count: 2
  image:
    image: ubuntu
Status:
  readyReplicas: 2
  observedGeneration: 1
Conditions:
  TYPE    STATUS   REASON             MESSAGE   AGE
  Ready   True     AllReplicasReady   <none>    10m
Containers:
  NAME             WORKLOAD   NODE    PHASE     REASON           AGE
  blue.red-7f2c1   blue.red   node2   Running   <none>           3m
  blue.red-9a0d4   blue.red   node3   Failed    ImagePullError   3m
"""


def test_describe_a_node_lists_its_gpus_and_containers() -> None:
    text = describe.render(NODES[1], now=NOW, containers=CONTAINERS[:1])
    assert "GPUs:\n  INDEX   PRODUCT                MEMORY   CONTAINER   UUID\n" in text
    assert "  0       Tesla V100-SXM2-16GB   0B       c1          <none>\n" in text
    assert text.endswith("Containers:\n  NAME             WORKLOAD   PHASE     REASON   AGE\n"
                         "  blue.red-7f2c1   blue.red   Running   <none>   3m\n")
    assert "gpus" not in text  # shown as the table, not again in the status


def test_describe_says_none_where_there_is_nothing() -> None:
    text = describe.render(workload("w"), now=NOW, containers=[])
    assert "Labels:             <none>\n" in text
    assert text.endswith("Containers:         <none>\n")
    zone = obj({"kind": "Zone", "metadata": {"name": "z"}})
    assert "Status" not in describe.render(zone, now=NOW)


def test_columns_have_unique_headers() -> None:
    for kind in kinds.KINDS:
        headers = [c.header for c in columns.columns(kind.name, wide=True)]
        assert len(headers) == len(set(headers)), kind.name


def event(name: str, about: object_pb2.Object, reason: str, message: str, *,
          type_: str = "Normal", count: int = 1, first: float = 60,
          last: float = 60) -> object_pb2.Object:
    return obj({
        "kind": "Event",
        "metadata": {"name": name, "zone": "dc-rov-01", "workspace": "amedeo.setti"},
        "spec": {"type": type_, "reason": reason, "message": message, "count": count,
                 "source": "dora-controllers", "firstTimestamp": ago(seconds=first),
                 "lastTimestamp": ago(seconds=last),
                 "involvedObject": {"kind": about.kind, "name": about.metadata.name,
                                    "uid": about.metadata.uid}},
    })


def test_describe_ends_with_the_events_about_the_object_and_its_containers() -> None:
    blue = workload("blue.red", replica={"count": 1})
    blue.metadata.uid = "uid-blue.red"
    pending = container("blue.red.0", "blue.red")
    pending.metadata.uid = "uid-c0"
    events = [
        event("e1", blue, "NewVersion", "version 1 of the spec", last=120, first=120),
        event("e2", pending, "Unschedulable", "no node has 1 free GPU", type_="Warning",
              count=4, first=110, last=5),
    ]
    text = describe.render(blue, now=NOW, containers=[pending], events=events)
    assert text.endswith(
        "Events:\n"
        "  TYPE      REASON          AGE               FROM               MESSAGE\n"
        "  Normal    NewVersion      2m                dora-controllers   version 1 of the spec\n"
        "  Warning   Unschedulable   5s (x4 over 1m)   dora-controllers   "
        "container/blue.red.0: no node has 1 free GPU\n"
    )
    assert describe.render(blue, now=NOW, events=[]).endswith("Events:             <none>\n")


def test_events_and_versions_tables() -> None:
    blue = workload("blue.red")
    blue.metadata.uid = "u"
    assert table([event("e1", blue, "Created", "created container blue.red.0", last=30)]) == (
        "LAST SEEN   TYPE     REASON    OBJECT              MESSAGE\n"
        "30s         Normal   Created   workload/blue.red   created container blue.red.0\n"
    )
    version = obj({"kind": "Workloadversion",
                   "metadata": {"name": "blue.red.v2", "creationTimestamp": ago(hours=3)},
                   "spec": {"workload": "blue.red", "version": 2,
                            "template": {"image": {"image": "debian"}}}})
    assert table([version]) == (
        "NAME          WORKLOAD   VERSION   IMAGE    AGE\n"
        "blue.red.v2   blue.red   2         debian   3h\n"
    )


def test_json_of_a_list_of_one_is_still_a_list() -> None:
    one = [objects.new("Container", "blue.red-7f2c1", zone="z", workspace="w")]
    listed = json.loads(printers.serialize(one, Output.json))
    assert listed["kind"] == "List" and len(listed["items"]) == 1
