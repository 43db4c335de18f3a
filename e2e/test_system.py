"""The whole system on docker-compose, driven from outside with doractl: the seed
tutorial, GPU placement, and each fault ending with every replica running once."""

from __future__ import annotations

import pytest
import yaml

from e2e.cluster import APISERVERS, Doractl, compose, docker_containers, eventually, running_on

pytestmark = pytest.mark.timeout(600)


def workload_yaml(name: str, *, replicas: int, cmd: str = "sleep 3600", gpus: int = 0,
                  allow_anywhere: bool = True) -> str:
    selectors = ({"gpu": {"product_name": "Tesla V100-SXM2-16GB", "count": gpus}} if gpus
                 else {"cpu": {"product_name": "All", "count": 1}})
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Workload",
        "metadata": {"name": name},
        "spec": {
            "replica": {"count": replicas},
            "driver": "Docker",
            "selectors": selectors,
            "image": {"image": "dora/busybox", "pullPolicy": "Never"},
            "config": {"cmd": cmd, "affinity": "Distribute" if allow_anywhere else "First"},
        },
    }, sort_keys=False)


def apply(ctl: Doractl, text: str) -> str:
    return ctl("apply", "-f", "-", stdin=text).stdout


def replicas_running(ctl: Doractl, name: str, count: int, *, within: float = 90) -> list[str]:
    """Wait until exactly ``count`` containers of ``name`` run, in Dora and in Docker."""

    def probe() -> list[str] | None:
        nodes = running_on(ctl.containers(name))
        in_docker = docker_containers(name)
        if len(nodes) == count and len(in_docker) == count:
            return nodes or ["none"]
        return None

    return eventually(f"{count} running container(s) of {name}", probe, within=within)


def test_the_tutorial_flow(ctl: Doractl) -> None:
    assert "workload/tutorial created" in apply(ctl, workload_yaml("tutorial", replicas=0))
    replicas_running(ctl, "tutorial", 0)
    ctl("scale", "workload", "tutorial", "--replicas", "1")
    replicas_running(ctl, "tutorial", 1)
    ctl("scale", "workload", "tutorial", "--replicas", "2")
    replicas_running(ctl, "tutorial", 2)
    apply(ctl, workload_yaml("tutorial", replicas=2, cmd="sleep 7200"))
    eventually("containers of the new version", lambda: [
        c for c in ctl.containers("tutorial")
        if c["spec"]["template"]["config"]["cmd"] == "sleep 7200"
        and c.get("status", {}).get("phase") == "Running"
    ] if len(ctl.containers("tutorial")) == 2 else None, within=120)
    replicas_running(ctl, "tutorial", 2)
    ctl("stop", "workload", "tutorial")
    replicas_running(ctl, "tutorial", 0)
    assert ctl.objects("workloads", "tutorial"), "a stopped workload keeps its definition"
    ctl("start", "workload", "tutorial")
    replicas_running(ctl, "tutorial", 2)
    ctl("delete", "workload", "tutorial", "--wait")
    replicas_running(ctl, "tutorial", 0)


def test_a_gpu_workload_lands_on_the_gpu_node(ctl: Doractl) -> None:
    apply(ctl, workload_yaml("trainer", replicas=1, gpus=2))
    assert replicas_running(ctl, "trainer", 1) == ["e2e-gpu"]
    [container] = ctl.containers("trainer")
    assert len(container["spec"]["gpus"]) == 2
    ctl("delete", "workload", "trainer", "--wait")
    replicas_running(ctl, "trainer", 0)


def test_a_killed_agents_containers_come_back_on_the_other_node(ctl: Doractl) -> None:
    apply(ctl, workload_yaml("survivor", replicas=2))
    nodes = replicas_running(ctl, "survivor", 2)
    if "e2e-cpu" not in nodes:  # Distribute puts one on each node when both are empty
        pytest.fail(f"expected a replica on e2e-cpu, got {nodes}")
    compose("kill", "agent-cpu")
    eventually("the replicas on e2e-gpu", lambda: running_on(ctl.containers("survivor"))
               == ["e2e-gpu", "e2e-gpu"], within=90)
    compose("start", "agent-cpu")
    # Back, the agent removes what it ran for containers that are no longer its own.
    assert replicas_running(ctl, "survivor", 2) == ["e2e-gpu", "e2e-gpu"]
    ctl("delete", "workload", "survivor", "--wait")
    replicas_running(ctl, "survivor", 0)


def test_the_standby_controller_takes_over(ctl: Doractl) -> None:
    [lease] = ctl.objects("leases", "controllers")
    leader = lease["spec"]["holder"]
    assert leader in ("controllers-1", "controllers-2")
    compose("kill", leader)
    standby = "controllers-2" if leader == "controllers-1" else "controllers-1"
    eventually("the standby to lead", lambda: [
        lease for lease in ctl.objects("leases") if lease["metadata"]["name"] == "controllers"
        and lease["spec"]["holder"] == standby], within=60)
    apply(ctl, workload_yaml("after-failover", replicas=1))
    replicas_running(ctl, "after-failover", 1)
    compose("start", leader)
    ctl("delete", "workload", "after-failover", "--wait")
    replicas_running(ctl, "after-failover", 0)


def test_clients_keep_working_through_the_other_apiserver(ctl: Doractl) -> None:
    compose("stop", "apiserver-1")
    try:
        other = APISERVERS[1]
        apply_out = ctl("apply", "-f", "-", stdin=workload_yaml("via-two", replicas=1),
                        server=other).stdout
        assert "created" in apply_out
        eventually("via-two running", lambda: len(running_on(
            [c for c in ctl.objects("containers", server=other)
             if c["spec"]["workload"] == "via-two"])) == 1, within=90)
    finally:
        compose("start", "apiserver-1")
    eventually("apiserver-1 back", lambda: ctl.objects("workloads", "via-two"), within=60)
    ctl("delete", "workload", "via-two", "--wait")
    replicas_running(ctl, "via-two", 0)


def test_an_etcd_restart_loses_nothing(ctl: Doractl) -> None:
    apply(ctl, workload_yaml("durable", replicas=2))
    replicas_running(ctl, "durable", 2)
    before = {c["metadata"]["name"] for c in ctl.containers("durable")}
    compose("restart", "etcd")
    eventually("the API back", lambda: ctl.objects("workloads", "durable"), within=90)
    assert {c["metadata"]["name"] for c in ctl.containers("durable")} == before
    ctl("scale", "workload", "durable", "--replicas", "3")
    replicas_running(ctl, "durable", 3)
    ctl("delete", "workload", "durable", "--wait")
    replicas_running(ctl, "durable", 0)
