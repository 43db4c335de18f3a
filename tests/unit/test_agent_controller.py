"""The agent on ``dora.runtime``, on a fake clock: self-fencing fires once per outage
of lease refreshes, keys wait on the clock while the lease is not held or the Node is
fenced, an administrator's unfencing queues the node's Containers again, and the GPU
assignments come from the store's index. Nothing here sleeps: time moves when the
test advances it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio

from dora.agent.agent import Agent, Config
from dora.agent.containers import gpu_assignments
from dora.agent.docker_driver import DockerDriver
from dora.agent.inventory import Inventory
from dora.agent.lease import NodeLease
from dora.api import objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.runtime.clock import FakeClock
from dora.runtime.reconcile import Result

NODE, ZONE = "n1", "default"
KEY = Ref("Container", ZONE, "w", "c")


async def tick(clock: FakeClock, seconds: float, *, step: float = 0.25) -> None:
    """Move the clock by ``seconds`` in steps, letting every woken task run."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await anyio.wait_all_tasks_blocked()


async def engine_id() -> str:
    return "engine-1"


def lease_on(clock: FakeClock, fenced: list[float], client: Client) -> NodeLease:
    async def on_fence() -> None:
        fenced.append(clock.now())

    return NodeLease(client=client, node=NODE, zone=ZONE, ttl=4, identity=engine_id,
                     fence_after=3.0, on_fence=on_fence, clock=clock)


@contextlib.asynccontextmanager
async def agent_on(clock: FakeClock) -> AsyncIterator[Agent]:
    """An agent whose apiserver and Docker engine are nowhere: only what needs neither
    runs (the controller, the gates, the stores)."""
    async with Client("127.0.0.1:1", timeout=1) as client:
        yield Agent(config=Config(node=NODE, zone=ZONE), client=client,
                    engine=DockerDriver(host="unix:///nonexistent/docker.sock"),
                    inventory=Inventory(nvml=None), clock=clock)


def container(*, gpus: tuple[str, ...] = (), rv: int = 1) -> objects.Object:
    obj = objects.new("Container", KEY.name, zone=ZONE, workspace=KEY.workspace)
    obj.metadata.resource_version = rv
    obj.metadata.labels["dora.io/node"] = NODE
    obj.container.spec.node_name = NODE
    for uuid in gpus:
        obj.container.spec.gpus.add(uuid=uuid)
    return obj


def node(*, fenced: bool, rv: int) -> objects.Object:
    obj = objects.new("Node", NODE, zone=ZONE)
    obj.metadata.resource_version = rv
    obj.node.spec.fenced = fenced
    return obj


async def test_the_lease_fences_once_per_outage_of_refreshes() -> None:
    clock, fenced = FakeClock(), list[float]()
    async with Client("127.0.0.1:1", timeout=1) as client:
        lease = lease_on(clock, fenced, client)
        lease.last_refresh = start = clock.now()
        async with anyio.create_task_group() as group:
            group.start_soon(lease._fence_watch)
            await tick(clock, 2.75)
            assert fenced == [] and not lease.fenced
            await tick(clock, 0.25)
            assert fenced == [start + 3.0] and lease.fenced
            await tick(clock, 30)
            assert len(fenced) == 1, "once per outage"
            lease.last_refresh = clock.now()  # a refresh got through again
            await tick(clock, 0.25)
            assert not lease.fenced
            await tick(clock, 3)
            assert len(fenced) == 2 and lease.fenced
            group.cancel_scope.cancel()


async def test_a_lease_taken_over_on_the_same_engine_never_fences() -> None:
    clock, fenced = FakeClock(), list[float]()
    async with Client("127.0.0.1:1", timeout=1) as client:
        lease = lease_on(clock, fenced, client)
        lease.last_refresh = clock.now()
        lease._usurped, lease._usurper = True, "docker:engine-1"
        async with anyio.create_task_group() as group:
            group.start_soon(lease._fence_watch)
            await tick(clock, 30)
            group.cancel_scope.cancel()
    assert fenced == []


async def test_a_key_waits_on_the_clock_while_the_lease_is_not_held() -> None:
    clock = FakeClock()
    async with agent_on(clock) as agent, anyio.create_task_group() as group:
        group.start_soon(agent.controller.run)
        agent.controller.enqueue(KEY)
        await anyio.wait_all_tasks_blocked()
        assert agent.controller.counters["requeue"] == 1
        await tick(clock, 0.75)
        assert agent.controller.counters["requeue"] == 1
        await tick(clock, 0.25)
        assert agent.controller.counters["requeue"] == 2
        agent.controller.enqueue(KEY)  # an event meanwhile: at once, the delay stays
        await anyio.wait_all_tasks_blocked()
        assert agent.controller.counters["requeue"] == 3
        group.cancel_scope.cancel()


async def test_a_fenced_node_holds_its_keys_and_its_unfencing_queues_them_again() -> None:
    clock = FakeClock()
    async with agent_on(clock) as agent:
        agent.lease.held.set()
        agent.store.upsert(container())
        agent.nodes.upsert(node(fenced=True, rv=1))
        assert await agent.reconcile(key=KEY) == Result(requeue_after=2.0)
        # The Node's own key fences (Docker is unreachable here: nothing to stop).
        await agent.reconcile(key=agent.node_key)
        assert agent.node_fenced
        assert await agent.reconcile(key=KEY) == Result(requeue_after=2.0)
        agent.nodes.upsert(node(fenced=False, rv=2))
        await agent.reconcile(key=agent.node_key)
        assert not agent.node_fenced
        assert len(agent.controller.queue) == 1
        assert await agent.controller.queue.get() == KEY


async def test_gpu_assignments_come_from_the_stores_index() -> None:
    async with agent_on(FakeClock()) as agent:
        agent.store.upsert(container(gpus=("GPU-a", "GPU-b")))
        assert gpu_assignments(agent.store) == {"GPU-a": "w/c", "GPU-b": "w/c"}
        agent.store.upsert(container(gpus=("GPU-b",), rv=2))
        assert gpu_assignments(agent.store) == {"GPU-b": "w/c"}
        agent.store.remove(container(rv=3))
        assert gpu_assignments(agent.store) == {}
