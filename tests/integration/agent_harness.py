"""What the agent's integration tests share: the real Docker engine (or a clear skip),
the local busybox image, a node name whose Docker containers are removed after the
test whatever happens, Containers bound the way the scheduler binds them, and an
agent running in the test's event loop.

The test plays the scheduler: it declares the Node and applies Containers that are
already bound (``spec.nodeName``, the ``dora.io/node`` label, the ``dora.io/agent``
finalizer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dora.agent.agent import Agent, Config
from dora.agent.docker_driver import DockerDriver
from dora.agent.inventory import NVML, Inventory
from dora.api import conventions, errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from tests.eventually import eventually

BUSYBOX = os.environ.get("DORA_BUSYBOX_IMAGE", "dora/busybox:latest")
__all__ = ["eventually"]

ZONE = "default"
WORKSPACE = "default"


def docker_or_skip() -> Any:
    """A docker-py client of the local engine; the test is skipped if there is none."""
    import docker  # the tests, like the agent, may use docker-py

    try:
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto")
    except Exception as exc:
        pytest.skip(f"no Docker engine can run here (start one with hack/start-dockerd.sh): "
                    f"{exc}")
    try:
        client.images.get(BUSYBOX)
    except docker.errors.ImageNotFound:
        client.close()
        pytest.skip(f"image {BUSYBOX} is missing: build it with hack/busybox-image.sh")
    return client


def node_containers(docker: Any, node: str) -> list[Any]:
    """The node's Docker containers. docker-py inspects each one it lists, so one
    removed in between (the agent at work) fails the call: then it lists again."""
    import docker as docker_py

    for _ in range(20):
        try:
            return list(docker.containers.list(all=True,
                                               filters={"label": f"dora.node={node}"}))
        except docker_py.errors.NotFound:
            continue
    raise AssertionError(f"the containers of node {node} kept vanishing while listed")


@contextlib.contextmanager
def volumes_removed(docker: Any, under: Path) -> Iterator[None]:
    """Remove the Docker named volumes bound under ``under`` afterwards, pass or fail."""
    try:
        yield
    finally:
        for found in docker.volumes.list(filters={"label": "dora.volume"}):
            device = (found.attrs.get("Options") or {}).get("device", "")
            if device.startswith(str(under)):
                with contextlib.suppress(Exception):
                    found.remove(force=True)


@contextlib.contextmanager
def cleaned(docker: Any, *nodes: str) -> Iterator[None]:
    """Remove every Docker container labelled for ``nodes`` afterwards, pass or fail."""
    try:
        yield
    finally:
        for node in nodes:
            for container in node_containers(docker, node):
                with contextlib.suppress(Exception):
                    container.remove(force=True)


def new_node_name() -> str:
    return f"node-{uuid.uuid4().hex[:8]}"


async def declare_node(client: Client, node: str) -> None:
    obj = objects.new("Node", node, zone=ZONE)
    obj.node.spec.endpoint = "127.0.0.1:3001"
    obj.node.spec.allow.extend(["CPUWorkload", "GPUWorkload"])
    await client.apply(obj)


def bound(name: str, node: str, *, cmd: str = "sleep 600", image: str = BUSYBOX,
          pull_policy: str = "IfNotPresent", version: int = 1,
          workload: str = "web") -> object_pb2.Object:
    """A Container as the scheduler leaves it once bound to ``node``."""
    obj = objects.new("Container", name, zone=ZONE, workspace=WORKSPACE)
    obj.metadata.labels[conventions.NODE_LABEL] = node
    obj.metadata.labels[conventions.WORKLOAD_LABEL] = workload
    obj.metadata.finalizers.append(conventions.AGENT_FINALIZER)
    spec = obj.container.spec
    spec.workload, spec.version, spec.node_name = workload, version, node
    spec.cpu_millicores = 500
    spec.template.image.image = image
    spec.template.image.pull_policy = pull_policy
    spec.template.config.cmd = cmd
    return obj


async def get_container(client: Client, name: str) -> object_pb2.Object | None:
    try:
        return await client.get("Container", name, zone=ZONE, workspace=WORKSPACE)
    except errors.NotFound:
        return None


async def phase_of(client: Client, name: str, phase: str, *,
                   within: float = 20.0) -> object_pb2.Object:
    async def probe() -> object_pb2.Object | None:
        obj = await get_container(client, name)
        return obj if obj is not None and obj.container.status.phase == phase else None

    return await eventually(probe, what=f"container {name} to be {phase}", within=within)


async def gone(client: Client, name: str, *, within: float = 20.0) -> None:
    async def probe() -> bool:
        return await get_container(client, name) is None

    await eventually(probe, what=f"container {name} to be deleted", within=within)


async def polled(agent: Agent, times: int = 3, *, within: float = 20.0) -> None:
    """Until the agent has polled Docker ``times`` more times and reconciled all it
    queued: "nothing more happens" is checked once the agent has looked, not after a
    guessed sleep."""
    target = agent.polls + times

    async def looked() -> bool:
        await asyncio.sleep(0.01)
        return agent.polls >= target and agent.controller.queue.idle()

    await eventually(looked, what=f"{times} Docker polls of the agent, then a quiet queue",
                     within=within)


def config(node: str, **overrides: Any) -> Config:
    """Short intervals: a test sees in a second what production sees in several."""
    values: dict[str, Any] = dict(
        node=node, zone=ZONE, lease_ttl=2, stop_timeout=1, docker_poll_every=0.2,
        resync_every=5, status_every=0.3, status_heartbeat=5,
    )
    values.update(overrides)
    return Config(**values)


@contextlib.asynccontextmanager
async def running_agent(
    client: Client, node: str, *, nvml: NVML | None = None, simulated: bool = False,
    wait_ready: bool = True, docker_host: str | None = None,
    engine: DockerDriver | None = None, **overrides: Any,
) -> AsyncIterator[Agent]:
    """An agent in this event loop; leaving the block kills it as a crash would (its
    Docker containers keep running, its lease is not revoked)."""
    if engine is None:
        engine = DockerDriver(host=docker_host) if docker_host else DockerDriver()
    inventory = Inventory(nvml=nvml, simulated=simulated)
    agent = Agent(config=config(node, **overrides), client=client, engine=engine,
                  inventory=inventory)
    task = asyncio.create_task(agent.run(), name=f"agent {node}")
    try:
        if wait_ready:
            ready = asyncio.create_task(agent.ready.wait())
            done, _ = await asyncio.wait({ready, task}, timeout=20,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()  # raises what killed the agent
            if ready not in done:
                ready.cancel()
                pytest.fail(f"agent for {node} not ready in 20s")
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        inventory.close()  # its thread waiting for NVML's Xid events
        await engine.close()


class AnotherMachine(DockerDriver):
    """The local engine, claiming to be another machine's: an agent on it is a twin,
    not a previous run."""

    async def engine_id(self) -> str:
        return "ANOTHER:MACHINE"
