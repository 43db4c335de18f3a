"""Binding a container to a node so that no GPU is ever given twice.

One scheduler process serializes its own choices (``assumed`` placements), but
during a leader handover two schedulers may briefly run, and a resourceVersion
precondition on one Container cannot stop two *different* containers from
taking the same GPU. So a bind is three steps:

1. **reserve**: a conditional Apply sets ``spec.nodeName``, ``gpus``,
   ``cpuMillicores`` and the label ``dora.io/placement=<node>``. The agent does
   not see the container yet (it watches ``dora.io/node``).
2. **verify**: a List of the node's containers at a revision not older than the
   reservation's own (``resource_version``: the apiserver answers from its watch
   cache once that has caught up, else from etcd; either way one consistent
   snapshot that includes every write before the reservation) decides who has
   the resources: committed containers first, then reservations in the order
   they were written (their resourceVersion). The reservation loses if a GPU it
   wants is taken by one ahead of it, so is a node port it publishes, or the
   CPU ahead of it plus its own exceeds the node.
3. **commit**: a conditional Apply, on the very resourceVersion the reservation
   was written with, adds ``dora.io/node=<node>`` and the ``dora.io/agent``
   finalizer. A loser **releases** the reservation and tries again.

Why two commits cannot clash: take two that both committed, A at resourceVersion
a, B at b, a < b (each commit is conditional on that version, so neither changed
between its verify and its commit). B's snapshot is at a revision R >= b > a: A
was then either still reserved at a, which is ahead of b, or already committed;
either way ahead of B, and B would have lost. The same argument bounds CPU.
"""

from __future__ import annotations

import contextlib

from dora.api import conventions, errors, kinds
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.controllers.scheduler.filters import port_text
from dora.controllers.scheduler.snapshot import Placement, holds_resources, node_ports
from dora.runtime.cache import clone


class LostRace(errors.Conflict):
    """Another scheduler's reservation came first; place the container again."""


def committed(container: object_pb2.Object) -> bool:
    return conventions.NODE_LABEL in container.metadata.labels


async def reserve(client: Client, container: object_pb2.Object,
                  placement: Placement) -> object_pb2.Object:
    obj = clone(container)
    spec = obj.container.spec
    spec.node_name = placement.node
    del spec.gpus[:]
    for gpu in placement.gpus:
        spec.gpus.add(index=gpu.index, uuid=gpu.uuid, product_name=gpu.product)
    spec.cpu_millicores = placement.cpu_millicores
    obj.metadata.labels[conventions.PLACEMENT_LABEL] = placement.node
    obj.container.ClearField("status")
    reserved, _ = await client.apply(obj)
    return reserved


async def verify(client: Client, reserved: object_pb2.Object, *, cpu_capacity: int) -> None:
    """Raise ``LostRace`` unless ``reserved`` may have what it reserved."""
    meta, spec = reserved.metadata, reserved.container.spec
    items, _ = await client.list(
        kinds.CONTAINER, zone=meta.zone,
        label_selector=f"{conventions.PLACEMENT_LABEL}={spec.node_name}",
        resource_version=meta.resource_version,
    )
    mine = next((c for c in items if c.metadata.uid == meta.uid), None)
    if mine is None or mine.metadata.resource_version != meta.resource_version:
        raise LostRace(f"container {meta.name} changed while it was placed")
    ahead = [
        c for c in items
        if c.metadata.uid != meta.uid and c.container.spec.node_name == spec.node_name
        and holds_resources(c)
        and (committed(c) or c.metadata.resource_version < meta.resource_version)
    ]
    for other in ahead:
        clash = {g.index for g in other.container.spec.gpus} & {g.index for g in spec.gpus}
        if clash:
            raise LostRace(f"GPU {sorted(clash)} of node {spec.node_name} went to "
                           f"{other.metadata.workspace}/{other.metadata.name} first")
        ports = set(node_ports(other.container.spec.template)) & set(node_ports(spec.template))
        if ports:
            raise LostRace(f"nodePort {', '.join(port_text(p) for p in sorted(ports))} of "
                           f"node {spec.node_name} went to "
                           f"{other.metadata.workspace}/{other.metadata.name} first")
    used = sum(c.container.spec.cpu_millicores for c in ahead)
    if spec.cpu_millicores and used + spec.cpu_millicores > cpu_capacity:
        raise LostRace(f"the CPU of node {spec.node_name} went to other containers first")


async def commit(client: Client, reserved: object_pb2.Object) -> object_pb2.Object:
    obj = clone(reserved)
    obj.metadata.labels[conventions.NODE_LABEL] = obj.container.spec.node_name
    if conventions.AGENT_FINALIZER not in obj.metadata.finalizers:
        obj.metadata.finalizers.append(conventions.AGENT_FINALIZER)
    obj.container.ClearField("status")
    bound, _ = await client.apply(obj)
    return bound


async def release(client: Client, reserved: object_pb2.Object) -> None:
    """Undo a reservation that lost (best effort: a changed container is left as is)."""
    obj = clone(reserved)
    spec = obj.container.spec
    spec.node_name = ""
    del spec.gpus[:]
    spec.cpu_millicores = 0
    obj.metadata.labels.pop(conventions.PLACEMENT_LABEL, None)
    obj.container.ClearField("status")
    with contextlib.suppress(errors.Conflict, errors.NotFound):
        await client.apply(obj)
