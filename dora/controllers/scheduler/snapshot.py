"""From the cache to ``NodeInfo``s: what every node has and uses, right now.

Usage is counted from the Containers themselves (``spec.nodeName``, ``gpus``,
``cpuMillicores``, the node ports of the template), never from what agents
report, so a container bound a moment ago counts at once. A container holds its
resources from the moment it is reserved for a node until it is gone, also while
it is being deleted (its Docker container may still run), except once it is
Exited, Failed or Lost: then nothing runs.

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

from dora.api import conventions, kinds, objects
from dora.api.objects import Ref
from dora.api.v1 import cluster_pb2, object_pb2, workloads_pb2
from dora.controllers.events import label_value_ok
from dora.controllers.scheduler.filters import GPU, NodeInfo, Port, Request
from dora.runtime.cache import Cache

READY = "Ready"
UNHEALTHY = "Unhealthy"
TERMINAL_PHASES = frozenset({"Exited", "Failed", "Lost"})


@dataclass(frozen=True)
class Placement:
    """Where a container goes: node, GPUs and CPU."""

    node: str
    gpus: tuple[GPU, ...]
    cpu_millicores: int
    workload: str
    node_ports: tuple[Port, ...] = ()


def holds_resources(container: object_pb2.Object) -> bool:
    return bool(container.container.spec.node_name) and (
        container.container.status.phase not in TERMINAL_PHASES
    )


def workload_key(container: object_pb2.Object) -> str:
    return f"{container.metadata.workspace}/{container.container.spec.workload}"


def node_ports(template: workloads_pb2.WorkloadSpec) -> tuple[Port, ...]:
    """The node ports a container publishes (only a bridge network publishes any)."""
    network = template.network
    if (network.mode or "none").lower() != "bridge":
        return ()
    return tuple(sorted({(p.node_port, (p.protocol or "tcp").lower())
                         for p in network.ports if p.node_port}))


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
        node_ports=node_ports(container.container.spec.template),
    )


def placement_of(container: object_pb2.Object) -> Placement:
    spec = container.container.spec
    return Placement(
        node=spec.node_name,
        gpus=tuple(GPU(g.index, g.uuid, g.product_name) for g in spec.gpus),
        cpu_millicores=spec.cpu_millicores,
        workload=workload_key(container),
        node_ports=node_ports(spec.template),
    )


def healthy(gpu: cluster_pb2.GPUInfo) -> bool:
    """Only a GPU its agent calls Unhealthy is withheld; Unknown (or unreported) is not."""
    return gpu.health.status != UNHEALTHY


def node_signature(node: object_pb2.Object) -> tuple[object, ...]:
    """What of a Node the scheduler reads: two Nodes with one signature place alike."""
    spec, status = node.node.spec, node.node.status
    return (
        spec.scheduling_disabled, spec.fenced, tuple(spec.allow), status.phase,
        status.cpu.product_name,
        status.cpu.count,
        tuple((g.index, g.uuid, g.product_name, healthy(g)) for g in status.gpus),
    )


def node_info(node: object_pb2.Object, *, leased: bool,
              containers: list[object_pb2.Object]) -> NodeInfo:
    status, spec = node.node.status, node.node.spec
    used_gpus: set[int] = set()
    used_cpu = 0
    used_ports: set[Port] = set()
    workloads: collections.Counter[str] = collections.Counter()
    for container in containers:
        # holds_resources and placement_of, inlined: this runs for every container of
        # a node each time the node changes.
        body = container.container
        cspec = body.spec
        if not cspec.node_name or body.status.phase in TERMINAL_PHASES:
            continue
        used_gpus.update(g.index for g in cspec.gpus)
        used_cpu += cspec.cpu_millicores
        if cspec.template.network.ports:
            used_ports.update(node_ports(cspec.template))
        workloads[f"{container.metadata.workspace}/{cspec.workload}"] += 1
    return NodeInfo(
        name=node.metadata.name,
        ready=leased and status.phase == READY,
        # A fenced node is declared dead: nothing new goes there either.
        scheduling_disabled=spec.scheduling_disabled or spec.fenced,
        allow=frozenset(spec.allow),
        cpu_product=status.cpu.product_name,
        cpu_capacity=status.cpu.count * 1000,
        gpus=tuple(GPU(g.index, g.uuid, g.product_name, healthy(g)) for g in status.gpus),
        used_gpus=frozenset(used_gpus),
        used_cpu=used_cpu,
        workloads=dict(workloads),
        labelable=label_value_ok(node.metadata.name),
        used_ports=frozenset(used_ports),
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
        labelable=info.labelable, used_ports=info.used_ports | set(placement.node_ports),
    )


class Snapshot:
    """The nodes as the scheduler sees them, kept up to date incrementally.

    ``current`` recomputes only the nodes invalidated since the last call and those
    whose assumed placements changed, and appends their names to ``log``, so that
    ``placer.Placer`` can bring its own state up to date with the few nodes that
    changed instead of looking at every node again.
    """

    # The log is cut (and its readers start over) once it is this many times the nodes.
    LOG_LIMIT = 4

    def __init__(self, *, cache: Cache, zone: str) -> None:
        self.cache = cache
        self.zone = zone
        # Each node as the cache shows it (memoized until invalidated)...
        self._infos: dict[str, NodeInfo] = {}
        self._refs: dict[str, Ref] = {}
        # ...and with the assumed placements on it laid over.
        self._effective: dict[str, NodeInfo] = {}
        self._overlays: dict[str, tuple[Placement, ...]] = {}
        self._dirty: set[str] = set()
        # Names whose effective NodeInfo changed (or that went), oldest first; ``epoch``
        # grows whenever the log is cut, so a reader knows its position means nothing.
        self.log: list[str] = []
        self.epoch = 0

    def invalidate(self, node: str) -> None:
        self._infos.pop(node, None)
        self._dirty.add(node)

    def invalidate_all(self) -> None:
        self._infos.clear()
        self._dirty.update(self._refs)

    def nodes(self, *, assumed: Mapping[Ref, Placement]) -> list[NodeInfo]:
        return list(self.current(assumed=assumed).values())

    def current(self, *, assumed: Mapping[Ref, Placement]) -> Mapping[str, NodeInfo]:
        """Every node by name, assumed placements laid over (do not change it)."""
        store = self.cache.store(kinds.NODE)
        changed: set[str] = set()
        for name in self._dirty:
            ref = self._refs.get(name) or Ref(kinds.NODE, self.zone, "", name)
            node = store.get(ref)
            if node is None:
                if self._refs.pop(name, None) is not None:
                    self._infos.pop(name, None)
                    changed.add(name)
                continue
            self._refs[name] = ref
            if name not in self._infos:
                self._infos[name] = self._info(node)
            changed.add(name)
        self._dirty = set()
        if len(store) != len(self._refs):  # added or gone unannounced, or in another zone
            changed |= self._resync_all()
        overlays: dict[str, list[Placement]] = {}
        for placement in assumed.values():
            if placement.node in self._infos:
                overlays.setdefault(placement.node, []).append(placement)
        for name in self._overlays.keys() | overlays.keys():
            if tuple(overlays.get(name, ())) != self._overlays.get(name, ()):
                changed.add(name)
        for name in sorted(changed):
            self._overlays.pop(name, None)
            info = self._infos.get(name)
            if info is None:
                self._effective.pop(name, None)
            else:
                for placement in overlays.get(name, ()):
                    info = with_placement(info, placement)
                self._effective[name] = info
                if name in overlays:
                    self._overlays[name] = tuple(overlays[name])
            self.log.append(name)
        if len(self.log) > self.LOG_LIMIT * max(len(self._refs), 256):
            self.log = []
            self.epoch += 1
        return self._effective

    def _info(self, node: object_pb2.Object) -> NodeInfo:
        name = node.metadata.name
        lease = self.cache.store(kinds.LEASE).get_named(
            conventions.node_lease_name(name), zone=node.metadata.zone)
        return node_info(node, leased=lease is not None,
                         containers=self.cache.store(kinds.CONTAINER).by_index("node", name))

    def _resync_all(self) -> set[str]:
        """Look at every Node of the store: the names added, gone or invalidated."""
        refs: dict[str, Ref] = {}
        changed: set[str] = set()
        for node in self.cache.store(kinds.NODE):
            name = node.metadata.name
            refs[name] = objects.ref_of(node)
            if name not in self._infos:
                self._infos[name] = self._info(node)
                changed.add(name)
        for name in self._refs.keys() - refs.keys():
            self._infos.pop(name, None)
            changed.add(name)
        self._refs = refs
        return changed
