"""Preemption picks only lower-priority containers of other accounts, and enough of them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dora.api.objects import Ref
from dora.controllers.queue.preempt import Running, choose, without
from dora.controllers.scheduler import filters
from dora.controllers.scheduler.filters import GPU, NodeInfo, Request


def node(name: str, gpus: int, used: frozenset[int]) -> NodeInfo:
    return NodeInfo(name, gpus=tuple(GPU(i, f"{name}-{i}", "A100") for i in range(gpus)),
                    used_gpus=used, cpu_capacity=64_000)


running_strategy = st.lists(st.tuples(
    st.integers(-5, 5), st.sampled_from(["alice", "bob", "carol"]), st.integers(0, 3)),
    max_size=4, unique_by=lambda t: t[2])


@settings(max_examples=200, deadline=None)
@given(holders=running_strategy, want=st.integers(1, 4), priority=st.integers(-5, 5),
       account=st.sampled_from(["alice", "bob"]))
def test_victims_rank_below_and_belong_to_others_and_make_room(
        holders: list[tuple[int, str, int]], want: int, priority: int, account: str) -> None:
    info = node("n1", 4, frozenset(g for _, _, g in holders))
    running = {"n1": [Running(ref=Ref("Container", "z", a, f"c{g}"), priority=p, account=a,
                              created=float(g), gpus=frozenset({g}))
                      for p, a, g in holders]}
    request = Request(gpu_count=want)
    found = choose([info], running, request, priority=priority, account=account)
    if isinstance(filters.fit(info, request), filters.Fit):
        assert found is None, "what fits without stopping anything stops nothing"
        return
    eligible = [r for r in running["n1"] if r.priority < priority and r.account != account]
    if found is None:
        assert not isinstance(filters.fit(without(info, eligible), request), filters.Fit)
        return
    name, victims = found
    assert name == "n1" and victims
    assert all(v.priority < priority and v.account != account for v in victims)
    assert isinstance(filters.fit(without(info, victims), request), filters.Fit)
    assert not isinstance(filters.fit(without(info, victims[:-1]), request), filters.Fit), (
        "no more victims than needed (in the order tried)")


def test_the_node_with_the_cheapest_victims_is_chosen() -> None:
    busy = {name: node(name, 1, frozenset({0})) for name in ("a", "b")}
    running = {
        "a": [Running(Ref("Container", "z", "w", "a0"), priority=3, account="x", created=1,
                      gpus=frozenset({0}))],
        "b": [Running(Ref("Container", "z", "w", "b0"), priority=-1, account="x", created=1,
                      gpus=frozenset({0}))],
    }
    assert choose(list(busy.values()), running, Request(gpu_count=1), priority=5,
                  account="y") == ("b", tuple(running["b"]))
    assert choose(list(busy.values()), running, Request(gpu_count=1), priority=5,
                  account="x") is None, "never the same account's"
