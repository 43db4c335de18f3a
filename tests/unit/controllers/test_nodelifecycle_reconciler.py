"""The node lifecycle controller on the fake client and a fake clock: a node whose
agent's lease goes is NotReady at once, and loses its containers only after the
fence margin (when its agent has stopped them), never before."""

from __future__ import annotations

from dora.api import conventions, kinds, objects
from dora.api.v1 import object_pb2
from dora.controllers import nodelifecycle
from dora.runtime.testing import Harness

GRACE, MARGIN = 15.0, 5.0


async def _cluster(*, eager: bool = False) -> Harness[nodelifecycle.NodeLifecycle]:
    harness = Harness(nodelifecycle.CONTROLLER,
                      options={"node_grace": GRACE, "fence_margin": MARGIN})
    client = harness.client
    node = objects.new(kinds.NODE, "n1", zone="z")
    node.node.status.phase = "Ready"
    client.put(node)
    client.put(objects.new(kinds.LEASE, conventions.node_lease_name("n1"), zone="z"))
    container = objects.new(kinds.CONTAINER, "job.0", zone="z", workspace="w")
    container.container.spec.node_name = "n1"
    container.container.status.phase = "Running"
    container.metadata.finalizers.append(conventions.AGENT_FINALIZER)
    if eager:
        container.container.spec.template.config.replacement = "Eager"
    client.put(container)
    await harness.settle()
    return harness


def _node(harness: Harness[nodelifecycle.NodeLifecycle]) -> object_pb2.Object:
    return harness.client.stored(kinds.NODE, "n1", zone="z")


def _ready(node: object_pb2.Object) -> tuple[str, str]:
    ready = next(c for c in node.node.status.conditions if c.type == "Ready")
    return ready.status, ready.reason


async def test_a_lease_seen_to_expire_fences_then_evicts() -> None:
    harness = await _cluster()
    client = harness.client
    assert _node(harness).node.status.phase == "Ready"

    await client.delete(kinds.LEASE, conventions.node_lease_name("n1"), zone="z")
    await harness.settle()
    node = _node(harness)
    assert node.node.status.phase == nodelifecycle.NOT_READY
    assert _ready(node) == ("False", "NodeLeaseExpired")
    # Its agent may still be stopping the container behind a partition: it stays.
    assert client.names(kinds.CONTAINER) == ["job.0"]

    await harness.advance(MARGIN - 0.1)
    assert client.names(kinds.CONTAINER) == ["job.0"]
    await harness.advance(0.1)
    assert client.names(kinds.CONTAINER) == []
    assert harness.recorder.reasons() == ["ContainerLost"]
    assert nodelifecycle.LOST in {
        e.object.container.status.phase for e in client.history
        if e.object.kind == kinds.CONTAINER}


async def test_a_lease_never_seen_waits_for_the_grace_period() -> None:
    harness = Harness(nodelifecycle.CONTROLLER,
                      options={"node_grace": GRACE, "fence_margin": MARGIN})
    node = objects.new(kinds.NODE, "n1", zone="z")
    node.node.status.phase = "Ready"
    harness.client.put(node)
    await harness.settle()
    assert _node(harness).node.status.phase == "Ready"
    await harness.advance(GRACE - 1)
    assert _node(harness).node.status.phase == "Ready"
    await harness.advance(1)
    assert _node(harness).node.status.phase == nodelifecycle.NOT_READY


async def test_eager_workloads_are_replaced_at_the_expiry() -> None:
    harness = await _cluster(eager=True)
    await harness.client.delete(kinds.LEASE, conventions.node_lease_name("n1"), zone="z")
    await harness.settle()
    assert harness.client.names(kinds.CONTAINER) == []


async def test_a_fenced_node_loses_its_containers_at_once() -> None:
    harness = await _cluster()
    node = _node(harness)
    node.node.spec.fenced = True
    node.node.ClearField("status")
    await harness.client.apply(node)
    await harness.settle()
    assert _ready(_node(harness)) == ("False", "NodeFenced")
    assert harness.client.names(kinds.CONTAINER) == []


async def test_other_leases_wake_nothing() -> None:
    harness = await _cluster()
    harness.client.put(objects.new(kinds.LEASE, conventions.CONTROLLERS_LEASE, zone="z"))
    assert not harness.queue
