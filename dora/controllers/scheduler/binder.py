"""Binding a container to a node: one conditional write, like Kubernetes' Binding.

A bind is one Apply of the Container, conditional on the resourceVersion the
scheduler placed it from, that sets ``spec.nodeName``, ``gpus``,
``cpuMillicores``, the labels ``dora.io/placement=<node>`` and
``dora.io/node=<node>`` (what the agent watches) and the ``dora.io/agent``
finalizer, all at once. Only a caller with the verb ``Bind`` may write those
fields (the apiserver refuses them from anyone else).

What keeps a GPU from being given twice is the scheduler's own cache: choices are
made one at a time under a lock, against the cache with every placement the
scheduler made and the cache does not show yet laid over it (``Assumed``,
kube-scheduler's assume cache), so no List of the node is needed before the
write. This holds for one scheduler at a time: the controllers of a zone run
under a leader Lease, and a replica that loses it stops reconciling (Kubernetes
makes the same bargain).

A Container that carries ``dora.io/placement`` without ``dora.io/node`` was
reserved by a scheduler of the earlier, three-step protocol that stopped
half-way: ``conflict`` decides from the cache whether it may keep what it
reserved (containers bound there first, or reserved with an older
resourceVersion, come first); then it is committed in one write, or released.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from dora.api import conventions, errors
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers.scheduler.filters import port_text
from dora.controllers.scheduler.snapshot import Placement, holds_resources, node_ports
from dora.runtime.cache import clone


class LostRace(errors.Conflict):
    """What a container reserved is taken by another one: place it again."""


@dataclass
class Assumed:
    """A placement the scheduler made and its cache does not show yet.

    ``base`` is the Container's resourceVersion the bind is conditioned on: once
    the cache shows any other version of it (our bind, or a write that made ours
    fail), or shows it gone, the cache itself says what the node holds and the
    assumption is dropped. ``in_doubt``: the bind's outcome is unknown (the call
    failed without an answer); the assumption stays until it is resolved.
    """

    placement: Placement
    base: int
    in_doubt: bool = False


def committed(container: object_pb2.Object) -> bool:
    return conventions.NODE_LABEL in container.metadata.labels


def definite(exc: BaseException) -> bool:
    """Whether a failed write surely did not happen (the apiserver answered no)."""
    return isinstance(exc, errors.DoraError) and not isinstance(exc, errors.Unavailable)


def binding(container: object_pb2.Object, placement: Placement, *,
            master: str = "") -> object_pb2.Object:
    """The one write that binds ``container`` (at its resourceVersion) to ``placement``
    (and, for a gang's replica, tells it where rank 0 listens: ``master``)."""
    obj = clone(container)
    spec = obj.container.spec
    spec.node_name = placement.node
    if master:
        spec.gang_master = master
    del spec.gpus[:]
    for gpu in placement.gpus:
        spec.gpus.add(index=gpu.index, uuid=gpu.uuid, product_name=gpu.product)
    spec.cpu_millicores = placement.cpu_millicores
    obj.metadata.labels[conventions.PLACEMENT_LABEL] = placement.node
    obj.metadata.labels[conventions.NODE_LABEL] = placement.node
    if conventions.AGENT_FINALIZER not in obj.metadata.finalizers:
        obj.metadata.finalizers.append(conventions.AGENT_FINALIZER)
    obj.container.ClearField("status")
    return obj


async def bind(client: Client, container: object_pb2.Object,
               placement: Placement, *, master: str = "") -> object_pb2.Object:
    """Bind in one conditional write; ``errors.Conflict`` if the Container changed."""
    bound, _ = await client.apply(binding(container, placement, master=master))
    return bound


def conflict(reserved: object_pb2.Object, neighbours: Iterable[object_pb2.Object],
             assumed: Iterable[tuple[Ref, Placement]], *, key: Ref,
             cpu_capacity: int) -> str | None:
    """Why ``reserved`` (reserved, not committed) may not keep what it reserved, from the
    other containers of its node (``neighbours``) and the scheduler's assumptions; None
    when it may."""
    meta, spec = reserved.metadata, reserved.container.spec
    gpus = {g.index for g in spec.gpus}
    ports = set(node_ports(spec.template))
    used = 0
    ahead: list[tuple[str, set[int], set[tuple[int, str]], int]] = []
    for other in neighbours:
        if other.metadata.uid == meta.uid or other.container.spec.node_name != spec.node_name:
            continue
        if not holds_resources(other) or not (
                committed(other) or other.metadata.resource_version < meta.resource_version):
            continue
        ahead.append((f"{other.metadata.workspace}/{other.metadata.name}",
                      {g.index for g in other.container.spec.gpus},
                      set(node_ports(other.container.spec.template)),
                      other.container.spec.cpu_millicores))
    for ref, placement in assumed:
        if ref != key and placement.node == spec.node_name:
            ahead.append((f"{ref.workspace}/{ref.name}", {g.index for g in placement.gpus},
                          set(placement.node_ports), placement.cpu_millicores))
    for name, other_gpus, other_ports, cpu in ahead:
        if clash := gpus & other_gpus:
            return f"GPU {sorted(clash)} of node {spec.node_name} went to {name} first"
        if taken := ports & other_ports:
            return (f"nodePort {', '.join(port_text(p) for p in sorted(taken))} of node "
                    f"{spec.node_name} went to {name} first")
        used += cpu
    if spec.cpu_millicores and used + spec.cpu_millicores > cpu_capacity:
        return f"the CPU of node {spec.node_name} went to other containers first"
    return None


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
