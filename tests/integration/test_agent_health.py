"""The agent tells its operators how it is: gRPC health on its port (no secret
needed, nothing else served without it), and Prometheus figures of its containers and
its Docker calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from dora.agent.docker_streams import DockerStreams
from dora.agent.health import AgentHealth
from dora.agent.server import AgentServer
from dora.agent.streams import AgentStreamsService
from dora.api.client import Client
from dora.api.v1 import streams_pb2, streams_pb2_grpc
from tests.integration import agent_harness as h

pytestmark = pytest.mark.usefixtures("default_scope")


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_health_follows_the_lease_and_is_open_to_probes(
    client: Client, node: str
) -> None:
    await h.declare_node(client, node)
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    streams = DockerStreams(node=node, host="unix:///var/run/docker.sock")
    server = AgentServer(listen="127.0.0.1:0", secret="s" * 32, health=servicer,
                         handlers=[AgentStreamsService(docker=streams).handler()])
    await server.start()
    try:
        async with (h.running_agent(client, node) as agent,
                    grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel):
            watcher = AgentHealth(agent=agent, engine=agent.engine, servicer=servicer,
                                  every=0.2)
            watching = asyncio.create_task(watcher.run())
            try:
                probe = health_pb2_grpc.HealthStub(channel)

                async def serving() -> bool:
                    answer = await probe.Check(health_pb2.HealthCheckRequest())
                    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
                await h.eventually(serving, what="SERVING without the secret")
                assert watcher.check() == (True, "ok")
                # Everything else still needs the secret.
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await streams_pb2_grpc.AgentStreamsStub(channel).Logs(
                        streams_pb2.AgentLogsRequest(docker_id="x")).read()
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

                await client.apply(h.bound("web.0", node))
                await h.phase_of(client, "web.0", "Running")

                async def counted() -> bool:
                    return sample("dora_agent_containers", phase="Running") >= 1
                await h.eventually(counted, what="the Running container counted")
                assert sample("dora_agent_docker_seconds_count", call="create") >= 1
                assert sample("dora_agent_docker_seconds_count", call="list") >= 1

                agent.lease.held.clear()  # as when the lease is lost

                async def not_serving() -> bool:
                    answer = await probe.Check(health_pb2.HealthCheckRequest())
                    return bool(answer.status == health_pb2.HealthCheckResponse.NOT_SERVING)
                await h.eventually(not_serving, what="NOT_SERVING without the lease")
                assert watcher.check() == (False, "the node's lease is not held")
            finally:
                watching.cancel()
    finally:
        await server.stop()
        streams.close()
