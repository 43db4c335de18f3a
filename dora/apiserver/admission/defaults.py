"""Defaults for what a user may leave out, per kind (seed 001 gives most of them)."""

from __future__ import annotations

from collections.abc import Callable

from dora.api.v1 import object_pb2, tasks_pb2, workloads_pb2
from dora.apiserver.admission.limits import DEFAULT, Limits

ALL = "All"
# Seed 003: ten test jobs run first unless the user bypasses them (0).
TASK_TEST_JOBS = 10


def apply_defaults(obj: object_pb2.Object, limits: Limits = DEFAULT) -> None:
    """Fill in defaults in place; scope (zone, workspace) is the registry's business."""
    defaulter = _BY_KIND.get(obj.kind)
    if defaulter is not None:
        defaulter(obj)
    if limits.default_memory_bytes:
        if obj.kind == "Workload":
            memory(obj.workload.spec.selectors, limits.default_memory_bytes)
        elif obj.kind == "Task":
            memory(obj.task.spec.selectors, limits.default_memory_bytes)


def memory(selectors: workloads_pb2.Selectors, default: int) -> None:
    """The admin's default memory limit on a workload that names none: on its cpu
    selector, else on its gpu selector (the agent reads them in that order). Only
    Workloads and Tasks get it: their Containers copy it from them."""
    for name in ("cpu", "gpu"):
        if selectors.HasField(name):
            selector = getattr(selectors, name)
            if selector.memory:
                return
    name = "cpu" if selectors.HasField("cpu") else "gpu"
    getattr(selectors, name).memory = default


def workload_spec(spec: workloads_pb2.WorkloadSpec) -> None:
    if not spec.replica.HasField("count"):
        spec.replica.count = 1
    spec.driver = spec.driver or "Docker"
    if not spec.selectors.HasField("cpu") and not spec.selectors.HasField("gpu"):
        spec.selectors.cpu.count = 1
    for name in ("cpu", "gpu"):
        if spec.selectors.HasField(name):
            selector = getattr(spec.selectors, name)
            if not selector.product_name:
                selector.product_name.append(ALL)
    spec.image.pull_policy = spec.image.pull_policy or "IfNotPresent"
    spec.config.affinity = spec.config.affinity or "First"
    spec.config.restart_policy = spec.config.restart_policy or "Never"
    spec.network.mode = spec.network.mode or "none"
    for port in spec.network.ports:
        port.kind = port.kind or "NodePort"
        port.protocol = port.protocol or "tcp"
    for volume in spec.volumes:
        volume.target = volume.target or f"/{volume.name}"


def task_spec(spec: tasks_pb2.TaskSpec) -> None:
    if not spec.HasField("test_jobs"):
        spec.test_jobs = TASK_TEST_JOBS
    if not spec.selectors.HasField("cpu") and not spec.selectors.HasField("gpu"):
        spec.selectors.cpu.count = 1
    for name in ("cpu", "gpu"):
        if spec.selectors.HasField(name):
            selector = getattr(spec.selectors, name)
            if not selector.product_name:
                selector.product_name.append(ALL)
    spec.image.pull_policy = spec.image.pull_policy or "IfNotPresent"
    spec.affinity = spec.affinity or "First"
    spec.network.mode = spec.network.mode or "none"
    for volume in spec.volumes:
        volume.target = volume.target or f"/{volume.name}"


def _workload(obj: object_pb2.Object) -> None:
    workload_spec(obj.workload.spec)


def _container(obj: object_pb2.Object) -> None:
    workload_spec(obj.container.spec.template)


def _workloadversion(obj: object_pb2.Object) -> None:
    workload_spec(obj.workloadversion.spec.template)


def _event(obj: object_pb2.Object) -> None:
    obj.event.spec.type = obj.event.spec.type or "Normal"
    obj.event.spec.count = obj.event.spec.count or 1


def _storage(obj: object_pb2.Object) -> None:
    obj.storage.spec.kind = obj.storage.spec.kind or "NFS"


def _user(obj: object_pb2.Object) -> None:
    for binding in obj.user.spec.resources:
        binding.kind = binding.kind or ALL
        binding.zone = binding.zone or ALL
        binding.workspace = binding.workspace or ALL


_BY_KIND: dict[str, Callable[[object_pb2.Object], None]] = {
    "Workload": _workload,
    "Container": _container,
    "Workloadversion": _workloadversion,
    "Task": lambda obj: task_spec(obj.task.spec),
    "Event": _event,
    "Storage": _storage,
    "User": _user,
}
