"""Versions, status and the shared conventions of the workload controller."""

from __future__ import annotations

import datetime as dt

from dora.api import conventions, objects
from dora.api.v1 import object_pb2
from dora.apiserver import admission
from dora.controllers import conditions
from dora.controllers.workload import status as workload_status
from dora.controllers.workload import versions
from dora.controllers.workload.plan import Replica, plan
from dora.controllers.workload.reconciler import new_container

NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def workload(replicas: int = 2, image: str = "ubuntu") -> object_pb2.Object:
    wl = objects.new("Workload", "blue.red", zone="z", workspace="w")
    wl.metadata.uid = "uid-1"
    wl.metadata.generation = 3
    wl.workload.spec.replica.count = replicas
    wl.workload.spec.image.image = image
    admission.apply_defaults(wl)
    admission.validate(wl)
    return wl


def test_scaling_and_stopping_are_not_new_versions() -> None:
    a, b = workload(2), workload(5)
    b.workload.spec.stopped = True
    assert versions.template_of(a.workload.spec) == versions.template_of(b.workload.spec)
    assert versions.template_of(workload(image="python").workload.spec) != (
        versions.template_of(a.workload.spec))


def test_a_stored_version_matches_its_spec_after_admission() -> None:
    wl = workload()
    version = versions.new_version(wl, 1, versions.template_of(wl.workload.spec))
    admission.apply_defaults(version)  # what the apiserver does before storing it
    admission.validate(version)
    assert version.metadata.name == "blue.red.v1"
    assert version.metadata.owner_references[0].uid == "uid-1"
    assert versions.matching([version], versions.template_of(wl.workload.spec)) is version


def test_containers_carry_the_conventions() -> None:
    wl = workload()
    version = versions.new_version(wl, 4, versions.template_of(wl.workload.spec))
    container = new_container(wl, version, 7)
    assert container.metadata.name == "blue.red.7"
    assert container.metadata.labels == {conventions.WORKLOAD_LABEL: "blue.red"}
    owner = container.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "Workload", "blue.red", "uid-1", True)
    assert container.container.spec.version == 4
    assert container.container.spec.workload == "blue.red"
    assert container.container.spec.template.image.image == "ubuntu"
    assert not container.container.spec.node_name
    admission.validate(container)


def test_pausing_is_not_a_new_version() -> None:
    a, b = workload(), workload()
    b.workload.spec.paused = True
    assert versions.template_of(a.workload.spec) == versions.template_of(b.workload.spec)


def test_containers_get_the_slot_the_count_the_labels_and_the_pause_of_their_workload(
) -> None:
    wl = workload(replicas=3)
    wl.metadata.labels.update({"app": "x", "dora.io/node": "n1"})
    wl.workload.spec.paused = True
    version = versions.new_version(wl, 1, versions.template_of(wl.workload.spec))
    assert version.workloadversion.spec.cmd_argv
    container = new_container(wl, version, 2, replicas=3)
    spec = container.container.spec
    assert (spec.replica_index, spec.replicas, spec.paused, spec.shell_cmd) == (2, 3, True,
                                                                                False)
    assert container.metadata.labels == {"app": "x", conventions.WORKLOAD_LABEL: "blue.red"}


def test_containers_of_a_version_stored_before_cmd_was_an_argv_run_it_in_a_shell() -> None:
    wl = workload()
    version = versions.new_version(wl, 1, versions.template_of(wl.workload.spec))
    version.workloadversion.spec.cmd_argv = False  # as stored before the change
    assert new_container(wl, version, 0).container.spec.shell_cmd


def test_a_paused_workload_says_so_and_its_paused_containers_settle_a_rollout() -> None:
    wl = workload(replicas=2)
    wl.workload.spec.paused = True
    wl.workload.status.conditions.add(type="ZoneUnserved", status="True")
    step = plan(desired=2, version=1, restart_always=False, replicas=[
        Replica(f"blue.red.{i}", i, 1, phase="Paused", bound=True) for i in range(2)])
    status = workload_status.build(workload=wl, desired=2, version=1, plan=step,
                                   unschedulable=[], now=NOW)
    conds = {c.type: c for c in status.conditions}
    assert (conds["Available"].status, conds["Available"].reason,
            conds["Available"].message) == ("False", "Paused",
                                            "2 of 2 containers paused (doractl resume)")
    assert conds["Progressing"].reason == "Complete"
    assert "ZoneUnserved" not in conds, "the zone's own controller runs: it is served"
    rolling = plan(desired=1, version=2, restart_always=False, replicas=[
        Replica("blue.red.0", 0, 1, phase="Paused", bound=True),
        Replica("blue.red.1", 1, 2, phase="Paused", bound=True)])
    assert rolling.delete == (("blue.red.0", "replaced by version 2"),)


def test_status_counts_and_conditions() -> None:
    wl = workload(replicas=3)
    replicas = [Replica("blue.red.0", 0, 2, phase="Running", bound=True),
                Replica("blue.red.1", 1, 2, phase="Pending"),
                Replica("blue.red.2", 2, 1, phase="Running", bound=True)]
    step = plan(desired=3, version=2, replicas=replicas, restart_always=False)
    status = workload_status.build(
        workload=wl, desired=3, version=2, plan=step, now=NOW,
        unschedulable=[("blue.red.1", "no node has 2 free GPUs of [A, B]")],
    )
    assert (status.desired_replicas, status.current_replicas, status.updated_replicas,
            status.ready_replicas) == (3, 3, 2, 1)
    assert (status.observed_generation, status.current_version) == (3, 2)
    conds = {c.type: c for c in status.conditions}
    assert (conds["Available"].status, conds["Available"].message) == (
        "False", "1 of 3 containers running")
    assert conds["Progressing"].reason == "RollingOut"
    assert conds["Unschedulable"].message == "blue.red.1: no node has 2 free GPUs of [A, B]"

    wl.workload.status.CopyFrom(status)
    later = NOW + dt.timedelta(minutes=5)
    steady = plan(desired=3, version=2, restart_always=False, replicas=[
        Replica(f"blue.red.{i}", i, 2, phase="Running", bound=True) for i in range(3)])
    status = workload_status.build(workload=wl, desired=3, version=2, plan=steady,
                                   unschedulable=[], now=later)
    conds = {c.type: c for c in status.conditions}
    assert "Unschedulable" not in conds
    assert (conds["Available"].status, conds["Progressing"].reason) == ("True", "Complete")
    assert conds["Available"].last_transition_time.ToDatetime(dt.UTC) == later


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    status = object_pb2.Object().workload.status
    assert conditions.set_condition(status.conditions, type="Available", status="False",
                                    reason="A", message="1", now=NOW)
    assert not conditions.set_condition(status.conditions, type="Available", status="False",
                                        reason="A", message="1", now=NOW)
    later = NOW + dt.timedelta(seconds=30)
    assert conditions.set_condition(status.conditions, type="Available", status="False",
                                    reason="A", message="2", now=later)
    assert status.conditions[0].last_transition_time.ToDatetime(dt.UTC) == NOW
    conditions.set_condition(status.conditions, type="Available", status="True", now=later)
    assert status.conditions[0].last_transition_time.ToDatetime(dt.UTC) == later
    assert conditions.remove(status.conditions, "Available")
    assert not conditions.remove(status.conditions, "Available")


def test_scale_down_and_rollback_recipes() -> None:
    wl = workload(replicas=3)
    wl.metadata.resource_version = 42
    down = conventions.scale_down(wl, "blue.red.1")
    assert down.workload.spec.replica.count == 2
    assert down.metadata.annotations[conventions.SCALE_DOWN_ANNOTATION] == "blue.red.1"
    assert down.metadata.resource_version == 42, "a conditional write"
    again = conventions.scale_down(down, "blue.red.0")
    assert again.metadata.annotations[conventions.SCALE_DOWN_ANNOTATION] == (
        "blue.red.1,blue.red.0")
    assert conventions.scale_down(workload(replicas=0), "x").workload.spec.replica.count == 0

    old = versions.new_version(wl, 1, versions.template_of(workload(image="busybox")
                                                            .workload.spec))
    wl.workload.spec.stopped = True
    back = conventions.rollback(wl, old)
    assert back.workload.spec.image.image == "busybox"
    assert back.workload.spec.replica.count == 3 and back.workload.spec.stopped
