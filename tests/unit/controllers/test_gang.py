"""Gang placement's pure parts: Fill keeps a gang on few nodes, the GangWaiting
message, the gang's restarts in the workload plan, the YAML's validation and the
rank env the agent gives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dora.agent import dockerspec
from dora.api import objects
from dora.controllers.queue import turn
from dora.controllers.scheduler import gang
from dora.controllers.scheduler.filters import GPU, NodeInfo, Request
from dora.controllers.scheduler.snapshot import Placement, with_placement
from dora.controllers.workload.plan import Plan, Replica, plan
from tests.unit.test_admission import admit, fields, rejected, workload

A100 = "A100-SXM4-40GB"


def node(name: str, total: int, used: int = 0) -> NodeInfo:
    gpus = tuple(GPU(i, f"{name}-{i}", A100) for i in range(total))
    return NodeInfo(name, gpus=gpus, used_gpus=frozenset(range(used)), cpu_capacity=8000)


def place_gang(nodes: list[NodeInfo], request: Request, count: int) -> list[str] | None:
    """What the scheduler does under its lock: pick, lay the placement over, repeat."""
    by_name = {n.name: n for n in nodes}
    used: list[str] = []
    for _ in range(count):
        fit = gang.pick_fill(by_name.values(), request, used)
        if fit is None:
            return None
        by_name[fit.node.name] = with_placement(by_name[fit.node.name], Placement(
            node=fit.node.name, gpus=fit.gpus, cpu_millicores=0, workload="w"))
        used.append(fit.node.name)
    return used


def test_fill_puts_a_gang_on_the_node_with_room_for_most_not_the_most_loaded() -> None:
    # Plain Fill (the most loaded first) would start on `busy` and need three nodes.
    nodes = [node("busy", 4, used=3), node("empty", 4), node("half", 4, used=2)]
    assert place_gang(nodes, Request(gpu_count=1), 4) == ["empty"] * 4
    assert place_gang(nodes, Request(gpu_count=1), 6) == ["empty"] * 4 + ["half"] * 2
    assert place_gang(nodes, Request(gpu_count=2), 3) == ["empty", "empty", "half"]
    assert place_gang(nodes, Request(gpu_count=2), 4) is None


def test_fill_ties_go_to_the_most_loaded_then_by_name() -> None:
    nodes = [node("b", 4, used=2), node("a", 2), node("c", 2)]
    assert place_gang(nodes, Request(gpu_count=1), 2) == ["b", "b"]
    assert place_gang([node("b", 2), node("a", 2)], Request(gpu_count=1), 3) == [
        "a", "a", "b"]


def test_the_waiting_message_says_what_the_gang_needs_and_what_is_free() -> None:
    nodes = [node("a", 2), node("b", 2, used=1), replace(node("c", 4), ready=False)]
    message = gang.shortfall(Request(gpu_count=1), 4, nodes, "no node has room")
    assert message.startswith("4 replicas need 4 GPUs; 3 free")
    cpu = gang.shortfall(Request(cpu_millicores=4000), 3, [node("a", 0)], "x")
    assert cpu.startswith("3 replicas need 12000 CPU millicores; 8000 free")


def test_the_master_is_replica_0s_node_address() -> None:
    obj = objects.new("Node", "gpu-1", zone="z")
    obj.node.spec.endpoint = "https://10.10.10.2:3001"
    assert gang.node_address(obj, "gpu-1") == "10.10.10.2"
    obj.node.spec.endpoint = "10.0.0.7:3001"
    assert gang.node_address(obj, "gpu-1") == "10.0.0.7"
    assert gang.node_address(None, "gpu-1") == "gpu-1"


def replica(index: int, phase: str = "Running", version: int = 1, *,
            succeeded: bool = False) -> Replica:
    return Replica(name=f"g.{index}", index=index, version=version, phase=phase,
                   bound=True, succeeded=succeeded)


def gang_step(replicas: list[Replica], *, restart_always: bool, version: int = 1) -> Plan:
    return plan(desired=3, version=version, replicas=replicas,
                restart_always=restart_always, gang=True)


def test_always_restarts_the_whole_gang_when_one_ends() -> None:
    replicas = [replica(0), replica(1, "Exited"), replica(2, "Pending")]
    step = gang_step(replicas, restart_always=True)
    assert sorted(name for name, _ in step.delete) == ["g.0", "g.1", "g.2"]
    assert step.create == 0
    assert "the gang restarts together: replica g.1 ended" in step.delete[0][1]
    # Once they are going, the whole gang is made again.
    going = [replace(r, terminating=True) for r in replicas]
    assert gang_step(going, restart_always=True).create == 3
    # Without a gang, only the one that ended goes.
    assert [n for n, _ in plan(desired=3, version=1, replicas=replicas,
                               restart_always=True).delete] == ["g.1"]


def test_never_fails_the_whole_gang_and_makes_nothing_again() -> None:
    replicas = [replica(0), replica(1, "Failed"), replica(2)]
    step = gang_step(replicas, restart_always=False)
    assert sorted(name for name, _ in step.delete) == ["g.0", "g.2"]
    assert step.create == 0
    left = [replica(1, "Failed")]
    assert gang_step(left, restart_always=False) == replace(
        gang_step(left, restart_always=False), delete=(), create=0)
    # A replica that completed (exit 0) does not stop the others.
    done = [replica(0, "Exited", succeeded=True), replica(1), replica(2)]
    step = gang_step(done, restart_always=False)
    assert (step.delete, step.create) == ((), 0)


def test_a_scaled_gang_restarts_whole_with_its_new_size() -> None:
    told_2 = [replace(replica(i), world=2) for i in range(2)]
    step = gang_step(told_2, restart_always=False)  # desired is 3
    assert sorted(n for n, _ in step.delete) == ["g.0", "g.1"]
    assert "size changed to 3" in step.delete[0][1]
    assert gang_step([replace(r, world=3) for r in told_2], restart_always=False).create == 1


def test_a_new_version_replaces_the_gang_whole() -> None:
    old = [replica(0), replica(1), replica(2)]
    step = gang_step(old, restart_always=True, version=2)
    assert sorted(n for n, _ in step.delete) == ["g.0", "g.1", "g.2"]
    assert step.create == 3


def test_a_gang_is_admitted_with_host_or_bridge_and_a_matching_port() -> None:
    admit(workload(replica={"count": 4, "gang": True}, network={"mode": "host"}))
    admit(workload(replica={"count": 2, "gang": True}, network={
        "mode": "bridge", "ports": [{"kind": "NodePort", "nodePort": 29400, "port": 29400}]}))


@pytest.mark.parametrize(("spec", "field"), [
    ({"replica": {"count": 0, "gang": True}, "network": {"mode": "host"}},
     "spec.replica.count"),
    ({"replica": {"count": 2, "gang": True}}, "spec.network.mode"),
    ({"replica": {"count": 2, "gang": True}, "network": {"mode": "bridge"}},
     "spec.network.ports"),
    ({"replica": {"count": 2, "gang": True}, "network": {
        "mode": "bridge", "ports": [{"kind": "NodePort", "nodePort": 30000, "port": 29500}]}},
     "spec.network.ports[0].port"),
])
def test_a_gang_without_a_replica_or_a_network_is_refused_by_field(
        spec: dict[str, object], field: str) -> None:
    assert field in fields(rejected(workload(**spec)))


def test_the_agent_gives_a_gang_replica_its_rank_and_the_master() -> None:
    obj = objects.new("Container", "ddp.2", zone="z", workspace="w")
    spec = obj.container.spec
    spec.workload, spec.replica_index, spec.replicas = "ddp", 2, 4
    spec.gang_master = "10.0.0.1:29500"
    plain = dockerspec.dora_environment(obj, node="n")
    assert "RANK" not in plain and "DORA_RANK" not in plain
    spec.template.replica.gang = True
    env = dockerspec.dora_environment(obj, node="n")
    assert {k: env[k] for k in ("DORA_RANK", "DORA_WORLD_SIZE", "DORA_MASTER_ADDR",
                                "DORA_MASTER_PORT", "RANK", "WORLD_SIZE", "MASTER_ADDR",
                                "MASTER_PORT", "NODE_RANK", "LOCAL_RANK")} == {
        "DORA_RANK": "2", "DORA_WORLD_SIZE": "4", "DORA_MASTER_ADDR": "10.0.0.1",
        "DORA_MASTER_PORT": "29500", "RANK": "2", "WORLD_SIZE": "4",
        "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "NODE_RANK": "2",
        "LOCAL_RANK": "0"}


def test_a_gang_replica_takes_no_turn_in_the_queue() -> None:
    obj = objects.new("Container", "ddp.0", zone="z", workspace="w")
    assert turn.by_class(obj) != []
    obj.container.spec.template.replica.gang = True
    assert turn.by_class(obj) == [], "no container yields to a gang that cannot fit"
