"""How the agent is doing, for its operators: gRPC health and the HTTP endpoint.

The agent is healthy (``SERVING``) while it holds its node's lease and its Docker
engine answers; anything else is ``NOT_SERVING`` with the reason in ``/healthz``'s
body. The gRPC health service is served on the agent's port without the agent
secret (it tells nothing about the node's containers), so a load balancer or a
kubelet probe can ask it. The same loop counts the node's Containers by phase for
``/metrics`` (``dora_agent_containers``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from grpc_health.v1 import health_pb2

from dora.agent.agent import Agent
from dora.agent.docker_driver import Engine, EngineError
from dora.observability import metrics

log = logging.getLogger(__name__)

PHASES = ("Pending", "Creating", "Running", "Paused", "Exited", "Failed", "Lost")


class AgentHealth:
    def __init__(self, *, agent: Agent, engine: Engine, servicer: Any,
                 every: float = 2.0) -> None:
        self.agent = agent
        self.engine = engine
        self.servicer = servicer
        self.every = every
        self.reason = "starting"

    def check(self) -> tuple[bool, str]:
        """For ``/healthz``: healthy, and why not."""
        return (not self.reason, self.reason or "ok")

    async def run(self) -> None:
        while True:
            reason = await self._problem()
            if reason != self.reason:
                if reason:
                    log.warning("not healthy: %s", reason)
                self.reason = reason
                await self.servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING
                                        if reason else health_pb2.HealthCheckResponse.SERVING)
            self._count_phases()
            await asyncio.sleep(self.every)

    async def _problem(self) -> str:
        if not self.agent.lease.held.is_set():
            return "the node's lease is not held"
        if self.agent.node_fenced:
            return "the node is fenced by an administrator"
        try:
            async with asyncio.timeout(max(self.every, 1.0)):
                await self.engine.version()
        except (EngineError, TimeoutError) as exc:
            return f"the Docker engine does not answer: {exc or 'timeout'}"
        return ""

    def _count_phases(self) -> None:
        counts = collections.Counter(obj.container.status.phase or "Pending"
                                     for obj in self.agent.store)
        for phase in {*PHASES, *counts}:
            metrics.AGENT_CONTAINERS.labels(phase).set(counts.get(phase, 0))
