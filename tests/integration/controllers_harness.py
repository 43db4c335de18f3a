"""Simulated nodes and a controller harness for the controllers' integration tests.

``SimNode`` plays a node's agent against the real apiserver: it declares the
Node, reports its status (CPU, GPUs, Ready), holds the Lease ``node.<name>``
bound to an etcd lease it keeps alive, reports the Containers bound to it as
Running, and removes the ``dora.io/agent`` finalizer of the ones being deleted.
``kill`` stops all of it, as if the machine died: its lease then expires.

``Controllers`` runs a ``dora-controllers`` manager in-process with short
timings. This module has no tests of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import anyio
import pytest

from dora.api import conventions, errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from dora.controllers import main as controllers_main
from dora.runtime.manager import Manager
from tests import eventually as shared

TTL = 2
_uuids = itertools.count(1)


class TaskGroup(Protocol):
    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None: ...


class Background:
    """Tasks that outlive a fixture's setup: pytest-asyncio sets a fixture up and
    tears it down in different tasks, which an anyio task group does not allow."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(func(*args)))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result


@pytest.fixture
async def group() -> AsyncIterator[Background]:
    background = Background()
    yield background
    await background.close()


def workload(name: str, *, replicas: int = 1, image: str = "busybox", gpus: int = 0,
             products: Sequence[str] = ("All",), cpu: int = 1, affinity: str = "First",
             restart: str = "Never", zone: str = "default",
             workspace: str = "default") -> object_pb2.Object:
    obj = objects.new("Workload", name, zone=zone, workspace=workspace)
    spec = obj.workload.spec
    spec.replica.count = replicas
    spec.image.image = image
    spec.config.cmd = "sleep 3600"
    spec.config.affinity = affinity
    spec.config.restart_policy = restart
    if gpus:
        spec.selectors.gpu.count = gpus
        spec.selectors.gpu.product_name.extend(products)
    else:
        spec.selectors.cpu.count = cpu
        spec.selectors.cpu.product_name.append("All")
    return obj


class SimNode:
    def __init__(self, client: Client, name: str, *, gpus: Sequence[str] = (), cpus: int = 8,
                 allow: Sequence[str] = ("CPUWorkload", "GPUWorkload"), zone: str = "default",
                 auto_run: bool = True) -> None:
        self.client = client
        self.name = name
        self.gpus = list(gpus)
        self.cpus = cpus
        self.allow = list(allow)
        self.zone = zone
        self.auto_run = auto_run
        self.lease_id = 0
        self.seen: set[str] = set()
        self._scope: anyio.CancelScope | None = None

    async def declare(self) -> None:
        node = objects.new("Node", self.name, zone=self.zone)
        node.node.spec.allow.extend(self.allow)
        node.node.spec.endpoint = f"{self.name}:3001"
        await self.client.apply(node)
        status = objects.new("Node", self.name, zone=self.zone)
        status.node.status.phase = "Ready"
        status.node.status.cpu.count = self.cpus
        status.node.status.cpu.product_name = "Xeon"
        for index, product in enumerate(self.gpus):
            status.node.status.gpus.add(index=index, uuid=f"GPU-{next(_uuids):04d}",
                                        product_name=product)
        await self.client.update_status(status)

    async def start(self, group: TaskGroup) -> None:
        await self.declare()
        self.lease_id, _ = await self.client.grant_lease(TTL)
        lease = objects.new("Lease", conventions.node_lease_name(self.name), zone=self.zone)
        lease.lease.spec.holder = self.name
        lease.lease.spec.lease_id = self.lease_id
        lease.lease.spec.ttl_seconds = TTL
        await self.client.apply(lease)
        self._scope = anyio.CancelScope()
        group.start_soon(self._run, self._scope)

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_alive)
                group.start_soon(self._agent)

    def kill(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def _keep_alive(self) -> None:
        async for _ in self.client.keep_lease_alive(self.lease_id, every=0.5):
            pass

    async def _agent(self) -> None:
        async for event in self.client.watch(
            "Container", zone=self.zone,
            label_selector=f"{conventions.NODE_LABEL}={self.name}",
        ):
            if event.type == WatchEvent.DELETED:
                continue
            with contextlib.suppress(errors.Conflict, errors.NotFound):
                await self._handle(event.object)

    async def _handle(self, container: object_pb2.Object) -> None:
        meta = container.metadata
        if meta.HasField("deletion_timestamp"):
            if conventions.AGENT_FINALIZER in meta.finalizers:
                obj = object_pb2.Object()
                obj.CopyFrom(container)
                obj.metadata.finalizers.remove(conventions.AGENT_FINALIZER)
                await self.client.apply(obj)
            return
        if container.container.spec.node_name != self.name:
            return
        self.seen.add(meta.name)
        if self.auto_run and container.container.status.phase in ("", "Pending"):
            await set_phase(self.client, container, "Running", node=self.name)


async def set_phase(client: Client, container: object_pb2.Object, phase: str, *,
                    node: str = "", exit_code: int = 0) -> object_pb2.Object:
    obj = objects.new("Container", container.metadata.name, zone=container.metadata.zone,
                      workspace=container.metadata.workspace)
    obj.container.status.phase = phase
    obj.container.status.node_name = node or container.container.spec.node_name
    obj.container.status.exit_code = exit_code
    return await client.update_status(obj)


class Controllers:
    """A dora-controllers replica run in-process; ``stop`` kills it."""

    def __init__(self, client: Client, *, identity: str = "one", elect: bool = True,
                 **overrides: Any) -> None:
        options = controllers_main.Options(
            identity=identity, elect=elect, lease_ttl=TTL, node_grace=TTL, fence_margin=1.0,
            rollout_timeout=30.0, resync=30.0, stall_timeout=30.0, seed=7,
        )
        for key, value in overrides.items():
            setattr(options, key, value)
        self.client = client
        self.manager: Manager = controllers_main.build(client, options)
        self._scope = anyio.CancelScope()
        self._killed = False

    def start(self, group: TaskGroup) -> None:
        async def run() -> None:
            with self._scope:
                try:
                    await self.manager.run()
                except Exception:
                    if not self._killed:
                        raise

        group.start_soon(run)

    def stop(self) -> None:
        """A graceful stop: a leader gives its lease back."""
        self._scope.cancel()

    async def kill(self) -> None:
        """The process dies: its connection goes first, so nothing is given back."""
        self._killed = True
        await self.client.close()
        self._scope.cancel()


async def eventually(check: Callable[[], Awaitable[Any]], *, within: float = 10.0,
                     what: str = "") -> Any:
    """``tests.eventually`` with a missing object counting as not yet."""
    return await shared.eventually(check, within=within, what=what, ignore=(errors.NotFound,))


async def containers(client: Client, workload: str = "", *, zone: str = "default",
                     live: bool = True) -> list[object_pb2.Object]:
    selector = f"{conventions.WORKLOAD_LABEL}={workload}" if workload else ""
    items, _ = await client.list("Container", zone=zone, label_selector=selector)
    if live:
        items = [c for c in items if not c.metadata.HasField("deletion_timestamp")]
    return sorted(items, key=lambda c: c.metadata.name)


@contextlib.asynccontextmanager
async def admin_client(apiserver: APIServer, token: str) -> AsyncIterator[Client]:
    async with Client(f"127.0.0.1:{apiserver.port}", token=token, timeout=10) as client:
        yield client
