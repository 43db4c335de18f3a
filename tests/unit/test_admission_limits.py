"""Admission bounds: every count and size a user writes has a limit the admin sets,
and no string carries NUL or control characters."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from dora.api import errors
from dora.api.v1 import object_pb2
from dora.apiserver import admission
from dora.apiserver.admission import limits
from dora.apiserver.main import parse_args
from tests.unit.test_admission import make, workload
from tests.unit.test_tasks import task

GiB = 1024**3


def refused(obj: object_pb2.Object, bounds: limits.Limits = limits.DEFAULT
            ) -> dict[str, str]:
    admission.apply_defaults(obj, bounds)
    with pytest.raises(errors.Invalid) as caught:
        admission.validate(obj, bounds)
    return {v.field: v.description for v in caught.value.violations}


def admitted(obj: object_pb2.Object, bounds: limits.Limits = limits.DEFAULT
             ) -> object_pb2.Object:
    admission.apply_defaults(obj, bounds)
    admission.validate(obj, bounds)
    return obj


# --- counts and sizes ------------------------------------------------------------


@pytest.mark.parametrize(("spec", "field", "flag"), [
    ({"replica": {"count": 1_000_000_000}}, "spec.replica.count", "--max-replicas"),
    ({"replica": {"count": 1001}}, "spec.replica.count", "--max-replicas"),
    ({"config": {"shmSize": 10**18}}, "spec.config.shmSize", "--max-shm-size"),
    ({"config": {"shmSize": 64 * GiB + 1}}, "spec.config.shmSize", "--max-shm-size"),
    ({"selectors": {"cpu": {"count": 1, "memory": 2**62}}}, "spec.selectors.cpu.memory",
     "--max-memory"),
    ({"selectors": {"gpu": {"count": 1, "memory": 1025 * GiB}}},
     "spec.selectors.gpu.memory", "--max-memory"),
    ({"selectors": {"cpu": {"count": 1025}}}, "spec.selectors.cpu.count", "--max-cpus"),
    ({"selectors": {"cpu": {"millicores": 1_024_001}}}, "spec.selectors.cpu.millicores",
     "--max-cpus"),
    ({"selectors": {"gpu": {"count": 65}}}, "spec.selectors.gpu.count", "--max-gpus"),
    ({"volumes": [{"name": f"v{i}"} for i in range(65)]}, "spec.volumes", "--max-volumes"),
    ({"network": {"mode": "bridge", "ports": [
        {"port": 80, "nodePort": 20000 + i} for i in range(65)]}},
     "spec.network.ports", "--max-ports"),
])
def test_workload_counts_and_sizes_are_bounded(spec: dict[str, Any], field: str,
                                               flag: str) -> None:
    found = refused(workload(**spec))
    assert list(found) == [field]
    assert "is more than the limit" in found[field] and flag in found[field]


@pytest.mark.parametrize("spec", [
    {"replica": {"count": 1000}},
    {"config": {"shmSize": 64 * GiB}},
    {"selectors": {"cpu": {"count": 1, "memory": 1024 * GiB}}},
    {"selectors": {"cpu": {"count": 1024}, "gpu": {"count": 64}}},
    {"volumes": [{"name": f"v{i}"} for i in range(64)]},
])
def test_the_limits_themselves_are_admitted(spec: dict[str, Any]) -> None:
    admitted(workload(**spec))


def test_negative_memory_is_refused() -> None:
    found = refused(workload(selectors={"cpu": {"count": 1, "memory": -1}}))
    assert found == {"spec.selectors.cpu.memory": "must be >= 0"}


def test_the_admin_moves_a_limit() -> None:
    small = limits.Limits(max_replicas=5, max_shm_bytes=1024)
    assert list(refused(workload(replica={"count": 6}), small)) == ["spec.replica.count"]
    assert list(refused(workload(config={"shmSize": 1025}), small)) == ["spec.config.shmSize"]
    admitted(workload(replica={"count": 5}, config={"shmSize": 1024}), small)
    big = limits.Limits(max_replicas=10_000)
    admitted(workload(replica={"count": 10_000}), big)


def test_a_container_template_is_bounded_too() -> None:
    container = make("Container", {"workload": "w", "template": {
        "image": {"image": "x"}, "replica": {"count": 5000}}})
    assert list(refused(container)) == ["spec.template.replica.count"]


def test_every_bad_bound_is_named_at_once() -> None:
    found = refused(workload(replica={"count": 2000}, config={"shmSize": 10**15},
                             selectors={"cpu": {"count": 1, "memory": 10**15}}))
    assert set(found) == {"spec.replica.count", "spec.config.shmSize",
                          "spec.selectors.cpu.memory"}


@pytest.mark.parametrize(("spec", "field", "flag"), [
    ({"parallelism": 1001}, "spec.parallelism", "--max-task-parallelism"),
    ({"retries": 101}, "spec.retries", "--max-task-retries"),
    ({"testJobs": 1_000_000}, "spec.testJobs", "--max-task-test-jobs"),
    ({"shmSize": 10**18}, "spec.shmSize", "--max-shm-size"),
    ({"selectors": {"cpu": {"count": 1, "memory": 2**50}}}, "spec.selectors.cpu.memory",
     "--max-memory"),
    ({"selectors": {"gpu": {"count": 100}}}, "spec.selectors.gpu.count", "--max-gpus"),
    ({"volumes": [{"name": f"v{i}"} for i in range(65)]}, "spec.volumes", "--max-volumes"),
])
def test_task_counts_are_bounded(spec: dict[str, Any], field: str, flag: str) -> None:
    found = refused(task(**spec))
    assert list(found) == [field]
    assert flag in found[field]


def test_task_at_its_limits_is_admitted() -> None:
    admitted(task(parallelism=1000, retries=100, testJobs=1000))


# --- memory: the default limit ------------------------------------------------------


def test_default_memory_goes_on_the_selector_a_workload_has() -> None:
    bounds = limits.Limits(default_memory_bytes=8 * GiB)
    cpu = admitted(workload(), bounds).workload.spec.selectors
    assert cpu.cpu.memory == 8 * GiB and not cpu.HasField("gpu")
    gpu = admitted(workload(selectors={"gpu": {"count": 1}}), bounds).workload.spec.selectors
    assert gpu.gpu.memory == 8 * GiB and not gpu.HasField("cpu")
    own = admitted(workload(selectors={"cpu": {"count": 1, "memory": GiB}}), bounds)
    assert own.workload.spec.selectors.cpu.memory == GiB
    assert admitted(task(), bounds).task.spec.selectors.cpu.memory == 8 * GiB
    # Without a default, nothing is added.
    assert admitted(workload()).workload.spec.selectors.cpu.memory == 0


# --- nodePorts ------------------------------------------------------------------


@pytest.mark.parametrize("port", [0, -1, 65536, 10**6])
def test_node_ports_outside_the_range_are_refused(port: int) -> None:
    found = refused(workload(network={"mode": "bridge", "ports": [
        {"port": 80, "nodePort": port}]}))
    assert found == {"spec.network.ports[0].nodePort": "must be between 1 and 65535"}


# --- NUL and control characters -------------------------------------------------


@pytest.mark.parametrize(("obj", "field", "what"), [
    (workload(image={"image": "busy\0box"}), "spec.image.image", "NUL"),
    (workload(image={"image": "busybox\n"}), "spec.image.image", "a line break"),
    (workload(image={"image": "busy\x1bbox"}), "spec.image.image", "control character"),
    (workload(config={"affinity": "First\t"}), "spec.config.affinity", "must be one of"),
    (workload(volumes=[{"name": "v", "target": "/a\x07"}]), "spec.volumes[0].target",
     "control character"),
    (workload(config={"cmd": "sleep\0 1"}), "spec.config.cmd", "NUL"),
    (workload(config={"cmd": "sleep\x7f"}), "spec.config.cmd", "control character"),
    (make("Workload", {"image": {"image": "x"}}, annotations={"note": "a\0b"}),
     "metadata.annotations.note", "NUL"),
    (make("Workload", {"image": {"image": "x"}}, annotations={"a\nb": "x"}),
     "metadata.annotations.a\nb", "a line break"),
    (make("Storage", {"kind": "NFS", "endpoint": "host\r", "mountpath": "/m"}),
     "spec.endpoint", "a line break"),
    (make("Role", {"permission": {"Workload": ["Get\0"]}}),
     "spec.permission.Workload.verbs[0]", "NUL"),
    (task(exec="run %DATA %IN %OUT\0"), "spec.exec", "NUL"),
    (task(data={"volume": "files", "path": "a\nb"}), "spec.data.path", "a line break"),
])
def test_control_characters_are_refused_by_field(obj: object_pb2.Object, field: str,
                                                 what: str) -> None:
    found = refused(obj)
    assert field in found, found
    assert what in found[field]


def test_line_breaks_and_tabs_stay_where_text_has_lines() -> None:
    obj = admitted(make("Workload", {
        "image": {"image": "x"},
        "config": {"cmd": "sh -c 'echo a\n\techo b'",
                   "env": [{"name": "SCRIPT", "value": "line 1\nline 2\r\n\tend"}]},
    }, annotations={"doc": "first line\nsecond\tline"}))
    assert "\n" in obj.workload.spec.config.env[0].value
    admitted(task(exec="set -e\n\tpython3 /x.py %DATA %IN %OUT\n"))
    admitted(make("Workspace", {"description": "two\nlines"}))


def test_a_field_is_refused_once() -> None:
    found = refused(make("Zone", name="a\nb"))
    assert list(found) == ["metadata.name"]


# --- the flags ------------------------------------------------------------------


def test_every_limit_has_a_flag() -> None:
    names = {name for _, name, _ in limits.FLAGS}
    assert names == set(limits.Limits.__dataclass_fields__)


def test_apiserver_flags_set_the_limits() -> None:
    config = parse_args(["--max-replicas", "7", "--max-shm-size", "100",
                         "--default-memory", "50", "--max-memory", "60",
                         "--privileged-port-floor", "30000",
                         "--max-objects-per-workspace", "9", "--max-task-retries", "0"])
    bounds = config.bounds
    assert (bounds.max_replicas, bounds.max_shm_bytes, bounds.default_memory_bytes,
            bounds.max_memory_bytes, bounds.privileged_port_floor,
            bounds.max_objects_per_workspace, bounds.max_task_retries) == (
        7, 100, 50, 60, 30000, 9, 0)
    assert parse_args([]).bounds == limits.DEFAULT


@pytest.mark.parametrize(("argv", "message"), [
    (["--max-replicas", "0"], "--max-replicas must be at least 1"),
    (["--max-objects-per-workspace", "-1"], "--max-objects-per-workspace must be at least 1"),
    (["--default-memory", "10", "--max-memory", "5"], "must not exceed --max-memory"),
    (["--privileged-port-floor", "70000"], "at most 65536"),
])
def test_bad_limit_flags_are_refused(argv: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_from_args_reads_every_flag() -> None:
    parser = argparse.ArgumentParser()
    limits.add_flags(parser)
    assert limits.from_args(parser.parse_args([])) == limits.DEFAULT
