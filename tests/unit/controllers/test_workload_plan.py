"""The workload controller's plan: scaling, rolling replacement one at a time, restart
policy, stop, and which containers go first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from dora.controllers.workload.plan import Plan, Replica, plan, victims


def running(name: str, index: int, version: int = 1) -> Replica:
    return Replica(name=name, index=index, version=version, phase="Running", bound=True)


def step(replicas: list[Replica], *, desired: int = 2, version: int = 1,
         restart_always: bool = False, stopped: bool = False, prefer: Sequence[str] = (),
         rollout_timeout: float = 60.0) -> Plan:
    return plan(desired=desired, version=version, replicas=replicas,
                restart_always=restart_always, stopped=stopped, prefer=prefer,
                rollout_timeout=rollout_timeout)


def test_scale_up_creates_all_missing_at_once_and_scale_down_picks_victims() -> None:
    assert step([], desired=3).create == 3
    assert step([running("a.0", 0)], desired=3).create == 2
    replicas = [running("a.0", 0), running("a.1", 1), Replica("a.2", 2, 1),
                running("a.3", 3)]
    result = step(replicas, desired=2)
    assert result.create == 0
    assert [name for name, _ in result.delete] == ["a.2", "a.3"], \
        "the unscheduled one first, then the highest index"
    trash = step(replicas[:2] + replicas[3:], desired=2, prefer=["a.0"])
    assert [name for name, _ in trash.delete] == ["a.0"], "the one the user named"


def test_zero_and_stopped_delete_everything() -> None:
    replicas = [running("a.0", 0), running("a.1", 1)]
    stopped = step(replicas, desired=0, stopped=True)
    assert [r for _, r in stopped.delete] == ["the workload is stopped"] * 2
    assert stopped.create == 0
    assert [r for _, r in step(replicas, desired=0).delete] == ["replica count is 0"] * 2


def test_containers_being_deleted_do_not_count() -> None:
    replicas = [running("a.0", 0), replace(running("a.1", 1), terminating=True)]
    result = step(replicas, desired=2)
    assert result.create == 1 and result.delete == ()


def test_restart_policy() -> None:
    exited = replace(running("a.1", 1), phase="Exited")
    always = step([running("a.0", 0), exited], restart_always=True)
    assert always.delete == (("a.1", "it exited and restartPolicy is Always"),)
    assert always.create == 1
    never = step([running("a.0", 0), exited], restart_always=False)
    assert never.delete == () and never.create == 0
    crashed = replace(exited, ran=2.0, ended=3.0)
    looping = step([running("a.0", 0), crashed], restart_always=True)
    assert looping.delete == () and looping.create == 0
    assert looping.requeue_after == 7.0, "a crash loop is restarted every 10 s at most"
    assert step([running("a.0", 0), replace(crashed, ended=10.0)],
                restart_always=True).delete == (("a.1", "it exited and restartPolicy is Always"),)
    lost = step([running("a.0", 0), replace(running("a.1", 1), phase="Lost")])
    assert lost.delete == (("a.1", "its node was lost"),) and lost.create == 1


def test_a_new_version_replaces_containers_one_at_a_time() -> None:
    """Play the rollout: the agent runs each new container; at no step are there more
    than desired + 1 containers, nor fewer than desired running."""
    replicas = [running("a.0", 0), running("a.1", 1)]
    steps = 0
    while True:
        result = step(replicas, desired=2, version=2)
        steps += 1
        assert steps < 20
        if not result.delete and not result.create:
            break
        assert result.create <= 1
        gone = {name for name, _ in result.delete}
        replicas = [r for r in replicas if r.name not in gone]
        taken = {r.index for r in replicas}
        for _ in range(result.create):
            index = min(i for i in range(10) if i not in taken)
            taken.add(index)
            replicas.append(Replica(f"a.{index}", index, 2))
        assert len(replicas) <= 3
        # The scheduler and agent start what was created before the next look.
        live = sum(1 for r in replicas if r.phase == "Running")
        assert live >= 2 or result.create
        replicas = [running(r.name, r.index, r.version) for r in replicas]
    assert sorted(r.version for r in replicas) == [2, 2]
    assert len(replicas) == 2


def test_an_unsettled_new_container_holds_the_rollout() -> None:
    old = [running("a.0", 0), running("a.1", 1)]
    pending = Replica("a.2", 2, 2, phase="Pending", age=5.0)
    waiting = step([*old, pending], version=2, rollout_timeout=60)
    assert waiting.delete == () and waiting.create == 0
    assert waiting.requeue_after == 55.0, "look again when the timeout is due"
    assert waiting.rolling
    pulling = replace(pending, phase="Pulling", bound=True, age=500)
    assert step([*old, pulling], version=2).delete == (), "pulling is progress: wait"
    for settled in (running("a.2", 2, 2), replace(pending, unschedulable=True),
                    replace(pending, age=61.0), replace(pending, phase="Failed", bound=True)):
        result = step([*old, settled], version=2, rollout_timeout=60)
        assert [n for n, _ in result.delete] == ["a.1"], settled
        assert result.delete[0][1] == "replaced by version 2"


def test_victims_prefer_named_then_unscheduled_then_not_running_then_high_index() -> None:
    replicas = [running("a.0", 0), running("a.1", 1),
                Replica("a.2", 2, 1, phase="Creating", bound=True), Replica("a.3", 3, 1)]
    assert [r.name for r in victims(replicas, 4)] == ["a.3", "a.2", "a.1", "a.0"]
    assert [r.name for r in victims(replicas, 1, prefer=["a.0"])] == ["a.0"]
