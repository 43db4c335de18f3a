"""The queue's order: priority first, then the least decayed recent use (DRF)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dora.controllers.queue.order import FairShare, InUse, dominant_share, rank

ZONE = InUse(gpus=8, millicores=64_000)
uses = st.builds(InUse, gpus=st.integers(0, 8), millicores=st.integers(0, 64_000))


def test_the_dominant_share_is_the_larger_fraction() -> None:
    assert dominant_share(InUse(gpus=2, millicores=8_000), ZONE) == 0.25
    assert dominant_share(InUse(gpus=1, millicores=32_000), ZONE) == 0.5
    assert dominant_share(InUse(gpus=3), InUse()) == 0.0, "a zone with nothing"


def test_use_halves_in_a_half_life_and_a_steady_rate_converges() -> None:
    fair = FairShare(half_life=10)
    fair.observe(0, in_use={"a": InUse(gpus=8)}, capacity=ZONE)
    fair.observe(10, in_use={}, capacity=ZONE)
    after_ten = fair.usage("a")
    assert after_ten == pytest.approx(10 / math.log(2) * 0.5)
    fair.observe(20, in_use={}, capacity=ZONE)
    assert fair.usage("a") == pytest.approx(after_ten / 2)
    steady = FairShare(half_life=10)
    for t in range(0, 1000, 7):
        steady.observe(t, in_use={"a": InUse(gpus=4)}, capacity=ZONE)
    assert steady.usage("a") == pytest.approx(0.5 * 10 / math.log(2), rel=1e-3)
    with pytest.raises(ValueError, match="half-life"):
        FairShare(half_life=0)


@settings(max_examples=200, deadline=None)
@given(rate=uses, times=st.lists(st.floats(0.01, 50), min_size=1, max_size=10))
def test_how_often_use_is_observed_does_not_change_it(rate: InUse, times: list[float]) -> None:
    often, once = FairShare(half_life=30), FairShare(half_life=30)
    often.observe(0, in_use={"a": rate}, capacity=ZONE)
    once.observe(0, in_use={"a": rate}, capacity=ZONE)
    now = 0.0
    for step in times:
        now += step
        often.observe(now, in_use={"a": rate}, capacity=ZONE)
    once.observe(now, in_use={"a": rate}, capacity=ZONE)
    assert often.usage("a") == pytest.approx(once.usage("a"), rel=1e-9, abs=1e-12)


@given(a=uses, b=uses, seconds=st.floats(0.1, 1000))
def test_who_used_more_of_the_dominant_resource_waits(a: InUse, b: InUse,
                                                      seconds: float) -> None:
    fair = FairShare(half_life=60)
    fair.observe(0, in_use={"a": a, "b": b}, capacity=ZONE)
    fair.observe(seconds, in_use={}, capacity=ZONE)
    share_a, share_b = dominant_share(a, ZONE), dominant_share(b, ZONE)
    if share_a > share_b:
        assert fair.usage("a") > fair.usage("b")
    elif share_a == share_b:
        assert fair.usage("a") == fair.usage("b")


@given(p=st.integers(-100, 100), q=st.integers(-100, 100),
       u=st.floats(0, 1e6), v=st.floats(0, 1e6))
def test_priority_orders_before_use_and_use_before_age(p: int, q: int, u: float,
                                                       v: float) -> None:
    first = rank(priority=p, usage=u, created=2.0, name="x")
    second = rank(priority=q, usage=v, created=1.0, name="y")
    if p != q:
        assert (first < second) == (p > q)
    elif u != v:
        assert (first < second) == (u < v)
    else:
        assert second < first, "then the older"
