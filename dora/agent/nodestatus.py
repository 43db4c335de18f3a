"""The Node status: what the node has and whether it is ready, written by its agent.

Every few seconds the reporter reads the inventory (in a thread: /proc and NVML
block), asks Docker for its version, and builds the status: phase ``Ready`` (or
``NotReady`` when Docker cannot be reached, with a ``Ready`` condition saying
why), CPU, memory, GPUs with the Container each is assigned to, whether the GPUs
are simulated, the agent version and ``lastSeen``. Each GPU carries its health
(``gpuhealth``): a GPU that turns Unhealthy is written at the next reading, and
the scheduler stops giving it out. It writes only when something other than
``lastSeen``, GPU memory use, temperature and throttling changed (those move all
the time),
and otherwise refreshes ``lastSeen`` at a slower heartbeat; it always writes
after (re)taking the node's Lease, since the node-lifecycle controller may have
marked the node NotReady meanwhile. It writes only while the agent holds the
Lease: without it the node is not this agent's to report.

The Node itself is the administrator's (seed 004). When it is not declared the
reporter says so in the log, plainly, and keeps trying.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping

import dora
from dora.agent.docker_driver import Engine, EngineError
from dora.agent.gpuhealth import GPUHealth
from dora.agent.inventory import Inventory, Snapshot
from dora.agent.lease import NodeLease
from dora.api import errors, objects
from dora.api.client import Client
from dora.api.v1 import cluster_pb2, meta_pb2

log = logging.getLogger(__name__)

AGENT_VERSION = dora.__version__


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_status(
    snapshot: Snapshot,
    *,
    assignments: Mapping[str, str],
    docker_error: str | None,
    previous: cluster_pb2.NodeStatus | None,
    now: dt.datetime,
) -> cluster_pb2.NodeStatus:
    status = cluster_pb2.NodeStatus(
        phase="Ready" if docker_error is None else "NotReady",
        memory_bytes=snapshot.memory_bytes,
        simulated_gpus=snapshot.simulated_gpus,
        agent_version=AGENT_VERSION,
    )
    status.cpu.product_name = snapshot.cpu_model
    status.cpu.count = snapshot.cpu_count
    for gpu in snapshot.gpus:
        info = status.gpus.add(
            index=gpu.index, uuid=gpu.uuid, product_name=gpu.product_name,
            memory_total_bytes=gpu.memory_total_bytes, memory_used_bytes=gpu.memory_used_bytes,
            container=assignments.get(gpu.uuid, ""),
        )
        info.health.CopyFrom(health_proto(gpu.health))
        if gpu.utilization_percent is not None:
            info.utilization_percent = gpu.utilization_percent
    ready = meta_pb2.Condition(
        type="Ready",
        status="True" if docker_error is None else "False",
        reason="AgentReady" if docker_error is None else "DockerUnavailable",
        message="the agent holds the node's lease and Docker answers"
        if docker_error is None else docker_error,
    )
    before = next((c for c in previous.conditions if c.type == "Ready"), None) if previous else None
    if before is not None and before.status == ready.status:
        ready.last_transition_time.CopyFrom(before.last_transition_time)
    else:
        ready.last_transition_time.FromDatetime(now)
    status.conditions.append(ready)
    return status


def health_proto(health: GPUHealth) -> cluster_pb2.GPUHealth:
    """The reading as the Node status carries it; an unknown value stays unset."""
    message = cluster_pb2.GPUHealth(
        status=health.status, reasons=health.reasons, xids=health.xids,
        throttle_reasons=health.throttle_reasons, unknown=health.unknown,
    )
    for name in ("ecc_uncorrected", "ecc_corrected", "retired_pages", "retired_pages_pending",
                 "remapped_rows_uncorrectable", "remap_pending", "remap_failed",
                 "temperature_celsius"):
        value = getattr(health, name)
        if value is not None:
            setattr(message, name, value)
    return message


def comparable(status: cluster_pb2.NodeStatus) -> cluster_pb2.NodeStatus:
    """``status`` without what changes on its own (``lastSeen``, GPU memory in use and
    utilisation, temperature, throttle reasons)."""
    copy = cluster_pb2.NodeStatus()
    copy.CopyFrom(status)
    copy.ClearField("last_seen")
    for gpu in copy.gpus:
        gpu.memory_used_bytes = 0
        gpu.ClearField("utilization_percent")
        gpu.health.ClearField("temperature_celsius")
        del gpu.health.throttle_reasons[:]
    return copy


class NodeReporter:
    def __init__(
        self,
        *,
        client: Client,
        node: str,
        zone: str,
        inventory: Inventory,
        engine: Engine,
        lease: NodeLease,
        assignments: Callable[[], Mapping[str, str]],
        every: float = 5.0,
        heartbeat: float = 30.0,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.node = node
        self.zone = zone
        self.inventory = inventory
        self.engine = engine
        self.lease = lease
        self.assignments = assignments
        self.every = every
        self.heartbeat = heartbeat
        self._now = now
        self._snapshot: Snapshot | None = None
        self._written: cluster_pb2.NodeStatus | None = None
        self._written_at = 0.0
        self._written_generation = -1
        self._undeclared_logged_at: float | None = None
        self.writes = 0

    async def run(self) -> None:
        while True:
            try:
                await self.report()
            except errors.DoraError as exc:
                log.warning("cannot report Node %s/%s: %s", self.zone, self.node, exc)
            await asyncio.sleep(self.every)

    async def report(self) -> bool:
        """Write the status if it is due; True when written."""
        if not self.lease.held.is_set():
            return False
        snapshot = await self._read_inventory()
        if snapshot is None:
            return False
        docker_error: str | None = None
        try:
            await self.engine.version()
        except EngineError as exc:
            docker_error = str(exc)
        status = build_status(snapshot, assignments=self.assignments(),
                              docker_error=docker_error, previous=self._written,
                              now=self._now())
        due = (self._written is None
               or self._written_generation != self.lease.generation
               or time.monotonic() - self._written_at >= self.heartbeat
               or comparable(status) != comparable(self._written))
        if not due:
            return False
        status.last_seen.FromDatetime(self._now())
        obj = objects.new("Node", self.node, zone=self.zone)
        obj.node.status.CopyFrom(status)
        generation = self.lease.generation
        try:
            await self.client.update_status(obj)
        except errors.NotFound:
            self._undeclared()
            self._written = None
            return False
        if self._undeclared_logged_at is not None:
            log.info("Node %s/%s is declared now; reporting its status", self.zone, self.node)
            self._undeclared_logged_at = None
        if self._written is None or self._written.phase != status.phase:
            log.info("Node %s/%s is %s", self.zone, self.node, status.phase)
        self._written, self._written_at = status, time.monotonic()
        self._written_generation = generation
        self.writes += 1
        return True

    def gpu_utilization(self) -> dict[str, int]:
        """Each GPU's utilisation (percent) by UUID, from the latest reading."""
        gpus = self._snapshot.gpus if self._snapshot is not None else ()
        return {g.uuid: g.utilization_percent for g in gpus if g.utilization_percent is not None}

    async def _read_inventory(self) -> Snapshot | None:
        try:
            self._snapshot = await asyncio.to_thread(self.inventory.read)
        except Exception as exc:  # NVML raises its own tree; keep the last good reading
            log.warning("cannot read the node's inventory: %s", exc)
        return self._snapshot

    def _undeclared(self) -> None:
        now = time.monotonic()
        if self._undeclared_logged_at is not None and now - self._undeclared_logged_at < 60:
            return
        self._undeclared_logged_at = now
        log.warning("Node %s/%s is not declared; ask an administrator to apply it (seed 004)",
                    self.zone, self.node)
