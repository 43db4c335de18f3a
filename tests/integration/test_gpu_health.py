"""GPU health end to end: a real agent (simulated GPUs, real Docker) reports an injected
fault, the real scheduler stops placing on that GPU, ``get gpus`` shows it, and the
container already on a GPU that turns unhealthy gets a GPUUnhealthy event (real etcd,
apiserver, controllers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dora.agent import inventory
from dora.api import conventions
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import (
    Controllers,
    TaskGroup,
    containers,
    eventually,
    group,
    workload,
)
from tests.integration.test_ctl_support import Ctl, table

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]
__all__ = ["group"]


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


async def gpu_health(client: Client, node: str) -> list[str]:
    obj = await client.get("Node", node, zone=h.ZONE)
    return [g.health.status for g in obj.node.status.gpus]


async def test_an_injected_fault_takes_the_gpu_out_of_placement_and_warns_its_container(
        client: Client, node: str, group: TaskGroup, ctl: Ctl) -> None:
    await h.declare_node(client, node)
    nvml = inventory.SimulatedNVML(
        inventory.parse_simulated("2xA100-SXM4-80GB,1xA100-SXM4-80GB[ecc=2]"), node=node)
    async with h.running_agent(client, node, nvml=nvml, simulated=True):
        async def reported() -> bool:
            return await gpu_health(client, node) == ["Healthy", "Healthy", "Unhealthy"]

        await eventually(reported, what="the spec's fault on GPU 2 in the Node status")
        gpus = (await client.list_devices("GPU", zone=h.ZONE)).items
        mine = [(d.index, d.health, list(d.health_reasons)) for d in gpus if d.node == node]
        assert mine == [(0, "Healthy", []), (1, "Healthy", []),
                        (2, "Unhealthy", ["2 uncorrected ECC error(s)"])]

        Controllers(client, controllers=("workload", "scheduler", "gpuhealth")).start(group)
        await client.apply(workload("train", replicas=3, gpus=1, image=h.BUSYBOX))

        async def placed() -> list[object_pb2.Object] | None:
            found = [c for c in await containers(client, "train")
                     if c.container.status.phase == "Running"]
            return found if len(found) == 2 else None

        running = await eventually(placed, within=20, what="two replicas running")
        assert sorted(c.container.spec.gpus[0].index for c in running) == [0, 1]

        async def waiting() -> object_pb2.Object | None:
            pending = [c for c in await containers(client, "train")
                       if not c.container.spec.node_name]
            return pending[0] if pending else None

        third = await waiting()
        assert third is not None, "the third replica may not have the unhealthy GPU"

        # GPU 1 turns bad under a running container: an NVML Xid event.
        on_one = next(c for c in running if c.container.spec.gpus[0].index == 1)
        nvml.inject(1, "xid=79")

        async def warned() -> object_pb2.Object | None:
            events, _ = await client.list(
                "Event", label_selector=f"{conventions.WORKLOAD_LABEL}=train")
            return next((e for e in events if e.event.spec.reason == "GPUUnhealthy"), None)

        event = await eventually(warned, within=20, what="a GPUUnhealthy event")
        assert event.event.spec.involved_object.name == on_one.metadata.name
        assert event.event.spec.type == "Warning"
        assert "Xid 79 (GPU has fallen off the bus)" in event.event.spec.message
        assert await gpu_health(client, node) == ["Healthy", "Unhealthy", "Unhealthy"]
        # It keeps running (the user decides), and the third replica still waits.
        assert (await client.get("Container", on_one.metadata.name, zone=h.ZONE,
                                 workspace=h.WORKSPACE)).container.status.phase == "Running"
        still = await client.get("Container", third.metadata.name, zone=h.ZONE,
                                 workspace=h.WORKSPACE)
        assert not still.container.spec.node_name
        rows = [r for r in table(await ctl.ok("get", "gpus", "-o", "wide"))
                if r["NODE"] == node]
        assert [(r["INDEX"], r["HEALTH"], r.get("WHY", "")) for r in rows] == [
            ("0", "Healthy", ""),
            ("1", "Unhealthy", "Xid 79 (GPU has fallen off the bus)"),
            ("2", "Unhealthy", "2 uncorrected ECC error(s)")]
