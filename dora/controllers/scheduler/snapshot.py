"""From the cache to ``NodeInfo``s: what every node has and uses, right now.

Usage is counted from the Containers themselves (``spec.nodeName``, ``gpus``,
``cpuMillicores``), never from what agents report, so a container bound a
moment ago counts at once. A container holds its resources from the moment it
is reserved for a node until it is gone, also while it is being deleted (its
Docker container may still run), except once it is Exited, Failed or Lost: then
nothing runs.

A node is Ready when its status says Ready *and* its agent's Lease
``node.<name>`` exists.

``Snapshot`` memoizes one ``NodeInfo`` per node and forgets it when something
about that node changes (``invalidate``), so placing a container costs a pass
over the nodes, not over every container of the zone. Placements the scheduler
has made but the cache does not show yet (``assumed``) are laid over it.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass

from dora.api import conventions
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers.events import label_value_ok
from dora.controllers.runtime.cache import Cache
from dora.controllers.scheduler.filters import GPU, NodeInfo, Request

READY = "Ready"
TERMINAL_PHASES = frozenset({"Exited", "Failed", "Lost"})


@dataclass(frozen=True)
class Placement:
    """Where a container goes: node, GPUs and CPU."""

    node: str
    gpus: tuple[GPU, ...]
    cpu_millicores: int
    workload: str


def holds_resources(container: object_pb2.Object) -> bool:
    return bool(container.container.spec.node_name) and (
        container.container.status.phase not in TERMINAL_PHASES
    )


def workload_key(container: object_pb2.Object) -> str:
    return f"{container.metadata.workspace}/{container.container.spec.workload}"


def request_of(container: object_pb2.Object) -> Request:
    selectors = container.container.spec.template.selectors
    cpu, gpu = selectors.cpu, selectors.gpu
    millicores = (cpu.millicores or cpu.count * 1000) if selectors.HasField("cpu") else 0
    return Request(
        workload=workload_key(container),
        gpu_count=gpu.count if selectors.HasField("gpu") else 0,
        gpu_products=tuple(gpu.product_name) or ("All",),
        cpu_millicores=millicores,
        cpu_products=tuple(cpu.product_name) or ("All",),
    )


def placement_of(container: object_pb2.Object) -> Placement:
    spec = container.container.spec
    return Placement(
        node=spec.node_name,
        gpus=tuple(GPU(g.index, g.uuid, g.product_name) for g in spec.gpus),
        cpu_millicores=spec.cpu_millicores,
        workload=workload_key(container),
    )


def node_signature(node: object_pb2.Object) -> tuple[object, ...]:
    """What of a Node the scheduler reads: two Nodes with one signature place alike."""
    spec, status = node.node.spec, node.node.status
    return (
        spec.scheduling_disabled, tuple(spec.allow), status.phase, status.cpu.product_name,
        status.cpu.count, tuple((g.index, g.uuid, g.product_name) for g in status.gpus),
    )


def node_info(node: object_pb2.Object, *, leased: bool,
              containers: list[object_pb2.Object]) -> NodeInfo:
    status, spec = node.node.status, node.node.spec
    used_gpus: set[int] = set()
    used_cpu = 0
    workloads: collections.Counter[str] = collections.Counter()
    for container in containers:
        if not holds_resources(container):
            continue
        placement = placement_of(container)
        used_gpus.update(g.index for g in placement.gpus)
        used_cpu += placement.cpu_millicores
        workloads[placement.workload] += 1
    return NodeInfo(
        name=node.metadata.name,
        ready=leased and status.phase == READY,
        scheduling_disabled=spec.scheduling_disabled,
        allow=frozenset(spec.allow),
        cpu_product=status.cpu.product_name,
        cpu_capacity=status.cpu.count * 1000,
        gpus=tuple(GPU(g.index, g.uuid, g.product_name) for g in status.gpus),
        used_gpus=frozenset(used_gpus),
        used_cpu=used_cpu,
        workloads=dict(workloads),
        labelable=label_value_ok(node.metadata.name),
    )


def with_placement(info: NodeInfo, placement: Placement) -> NodeInfo:
    """``info`` as it will be once ``placement`` is on it."""
    workloads = dict(info.workloads)
    workloads[placement.workload] = workloads.get(placement.workload, 0) + 1
    return NodeInfo(
        name=info.name, ready=info.ready, scheduling_disabled=info.scheduling_disabled,
        allow=info.allow, cpu_product=info.cpu_product, cpu_capacity=info.cpu_capacity,
        gpus=info.gpus, used_gpus=info.used_gpus | {g.index for g in placement.gpus},
        used_cpu=info.used_cpu + placement.cpu_millicores, workloads=workloads,
        labelable=info.labelable,
    )


class Snapshot:
    def __init__(self, *, cache: Cache, zone: str) -> None:
        self.cache = cache
        self.zone = zone
        self._infos: dict[str, NodeInfo] = {}

    def invalidate(self, node: str) -> None:
        self._infos.pop(node, None)

    def invalidate_all(self) -> None:
        self._infos.clear()

    def nodes(self, *, assumed: Mapping[Ref, Placement]) -> list[NodeInfo]:
        containers = self.cache.store("Container")
        infos: dict[str, NodeInfo] = {}
        for node in self.cache.store("Node"):
            name = node.metadata.name
            info = self._infos.get(name)
            if info is None:
                lease = self.cache.store("Lease").get_named(
                    conventions.node_lease_name(name), zone=node.metadata.zone)
                info = node_info(node, leased=lease is not None,
                                 containers=containers.by_index("node", name))
                self._infos[name] = info
            infos[name] = info
        for placement in assumed.values():
            if placement.node in infos:
                infos[placement.node] = with_placement(infos[placement.node], placement)
        return list(infos.values())
