"""The credit arithmetic (weeks, windows clipped to them, prices, the ledger) and whose
credit a workspace uses."""

from __future__ import annotations

import datetime as dt

import pytest

from dora.api import objects
from dora.api.v1 import credits_pb2, object_pb2
from dora.controllers.credit import accrual, ledger, reconciler
from dora.controllers.credit.accrual import Price, Prices
from dora.runtime.testing import Harness

UTC = dt.UTC
# A Wednesday.
WED = dt.datetime(2024, 1, 3, 12, 0, tzinfo=UTC)
MON = dt.datetime(2024, 1, 1, tzinfo=UTC)
V100 = "Tesla V100-SXM2-16GB"


def container(name: str = "c.0", *, uid: str = "", gpus: tuple[str, ...] = (V100, V100),
              millicores: int = 0, started: dt.datetime | None = None,
              finished: dt.datetime | None = None, phase: str = "Running",
              deleted: dt.datetime | None = None) -> object_pb2.Object:
    obj = objects.new("Container", name, zone="z", workspace="alice")
    obj.metadata.uid = uid or f"uid-{name}"
    for index, product in enumerate(gpus):
        obj.container.spec.gpus.add(index=index, uuid=f"GPU-{index}", product_name=product)
    obj.container.spec.cpu_millicores = millicores
    obj.container.spec.workload = "c"
    obj.container.status.phase = phase
    if started is not None:
        obj.container.status.started_at.FromDatetime(started)
    if finished is not None:
        obj.container.status.finished_at.FromDatetime(finished)
    if deleted is not None:
        obj.metadata.deletion_timestamp.FromDatetime(deleted)
    return obj


def test_week_starts_on_the_chosen_day_at_midnight_utc() -> None:
    week = accrual.week_of(WED)
    assert (week.start, week.end) == (MON, MON + dt.timedelta(days=7))
    sunday = accrual.week_of(WED, start_day=accrual.weekday("Sun"))
    assert sunday.start == dt.datetime(2023, 12, 31, tzinfo=UTC)
    # The start itself belongs to the new week.
    assert accrual.week_of(MON).start == MON
    assert accrual.week_of(MON - dt.timedelta(microseconds=1)).start == MON - dt.timedelta(7)
    # Another time zone is the same instant.
    paris = WED.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert accrual.week_of(paris) == accrual.week_of(WED)


def test_weekday_names() -> None:
    assert [accrual.weekday(d) for d in ("monday", "TUE", "Sunday")] == [0, 1, 6]
    with pytest.raises(ValueError, match="--credit-week-start: 'someday'"):
        accrual.weekday("someday")


def test_clip_to_the_week() -> None:
    week = accrual.week_of(WED)
    hour = dt.timedelta(hours=1)
    assert week.clip(WED, WED + 3 * hour) == 3 * 3600
    # Started last week: only this week's part.
    assert week.clip(MON - 2 * hour, MON + hour) == 3600
    # Runs past the week's end: up to the end.
    assert week.clip(week.end - hour, week.end + 5 * hour) == 3600
    assert week.clip(MON - 5 * hour, MON - hour) == 0
    assert week.clip(WED + hour, WED) == 0


def test_prices_match_product_names_in_any_case() -> None:
    prices = Prices({V100: Price(2.5, "€"), "xeon": Price(0.1, "€")})
    assert prices.per_hour("tesla v100-sxm2-16gb") == 2.5
    assert prices.per_hour(" TESLA V100-SXM2-16GB ") == 2.5
    assert prices.per_hour("Quadro RTX 6000") == 0.0
    assert prices.unit == "€"
    assert Prices({V100: Price(1, "€"), "x": Price(1, "$")}).unit == ""
    assert not Prices()


def test_prices_from_resourcecredits() -> None:
    rc = objects.new("Resourcecredit", V100, zone="z")
    rc.resourcecredit.spec.product_name = V100
    rc.resourcecredit.spec.credit.per.hour = 2.5
    rc.resourcecredit.spec.annotations["priceUnit"] = "€"
    gone = objects.new("Resourcecredit", "Xeon", zone="z")
    gone.resourcecredit.spec.product_name = "Xeon"
    gone.resourcecredit.spec.credit.per.hour = 9
    gone.metadata.deletion_timestamp.FromDatetime(WED)
    prices = Prices.of([rc, gone])
    assert (prices.per_hour(V100), prices.per_hour("xeon"), prices.unit) == (2.5, 0.0, "€")


def test_price_per_hour_of_a_container() -> None:
    prices = Prices({V100: Price(2.5), "Xeon Gold": Price(0.2)})
    assert accrual.per_hour(container(), prices=prices) == 5.0
    both = container(gpus=(V100,), millicores=1500)
    assert accrual.per_hour(both, prices=prices, cpu_product="xeon gold") == pytest.approx(2.8)
    # Unpriced products cost nothing.
    assert accrual.per_hour(container(gpus=("A100",)), prices=prices) == 0.0
    assert accrual.per_hour(both, prices=prices, cpu_product="") == 2.5


def test_window_from_the_status() -> None:
    hour = dt.timedelta(hours=1)
    assert accrual.window(container()) is None
    running = accrual.window(container(started=WED))
    assert running == accrual.Window(WED, None)
    ended = accrual.window(container(started=WED, finished=WED + hour, phase="Exited"))
    assert ended == accrual.Window(WED, WED + hour)
    # A Running status's finishedAt is a previous run's: ignored.
    assert accrual.window(container(started=WED, finished=WED - hour)) == running
    # Paused: it holds its GPUs, so it is charged as a running one.
    assert accrual.window(container(started=WED, finished=WED - hour, phase="Paused")) == running
    # Being deleted: charged until asked to go.
    going = accrual.window(container(started=WED, deleted=WED + 2 * hour))
    assert going == accrual.Window(WED, WED + 2 * hour)
    # Failed without a time: nothing to go by.
    assert accrual.window(container(started=WED, phase="Failed")) == accrual.Window(WED, WED)
    week = accrual.week_of(WED)
    assert running is not None
    assert running.seconds_in(week, now=WED + 3 * hour) == 3 * 3600


def test_two_gpus_at_2_5_for_3_hours_cost_15() -> None:
    week = accrual.week_of(WED)
    three_hours = WED + dt.timedelta(hours=3)
    live = [ledger.Metered(container(started=WED), 5.0)]
    account = ledger.account(previous=None, week=week, now=three_hours, live=live)
    assert account.used == pytest.approx(15.0)
    assert account.running_per_hour == 5.0
    assert account.charges == []


def _status(account: ledger.Account, week: accrual.Week) -> credits_pb2.UsercreditStatus:
    status = credits_pb2.UsercreditStatus(used=account.used, settled=account.settled)
    status.charges.extend(account.charges)
    status.week_start.FromDatetime(week.start)
    return status


def test_ledger_keeps_a_deleted_container_then_settles_it() -> None:
    week = accrual.week_of(WED)
    hour = dt.timedelta(hours=1)
    going = container(started=WED, deleted=WED + 3 * hour)
    first = ledger.account(previous=None, week=week, now=WED + 4 * hour,
                           live=[ledger.Metered(going, 5.0)])
    assert first.used == pytest.approx(15.0)
    assert [c.uid for c in first.charges] == ["uid-c.0"]
    assert first.running_per_hour == 0.0
    status = _status(first, week)
    # Seen again (a stale cache, a restart): counted once, from the ledger.
    again = ledger.account(previous=status, week=week, now=WED + 5 * hour,
                           live=[ledger.Metered(going, 99.0)])
    assert again.used == pytest.approx(15.0)
    # Gone: folded into settled.
    gone = ledger.account(previous=status, week=week, now=WED + 6 * hour, live=[])
    assert (gone.used, gone.settled, gone.charges) == (pytest.approx(15.0),
                                                       pytest.approx(15.0), [])
    # A new week: settled starts again.
    later = accrual.week_of(WED + dt.timedelta(days=7))
    assert ledger.account(previous=_status(gone, week), week=later, now=later.start,
                          live=[]).used == 0


def test_a_container_across_the_week_start_is_split() -> None:
    week = accrual.week_of(WED)
    next_week = accrual.week_of(week.end)
    hour = dt.timedelta(hours=1)
    running = container(started=week.end - 2 * hour)
    before = ledger.account(previous=None, week=week, now=week.end, live=[
        ledger.Metered(running, 5.0)])
    assert before.used == pytest.approx(10.0)
    after = ledger.account(previous=_status(before, week), week=next_week,
                           now=week.end + hour, live=[ledger.Metered(running, 5.0)])
    assert after.used == pytest.approx(5.0)
    # A ledger entry across the boundary is clipped to the new week too.
    going = container(started=week.end - 2 * hour, deleted=week.end + hour)
    entry = ledger.account(previous=None, week=week, now=week.end,
                           live=[ledger.Metered(going, 5.0)])
    assert entry.used == pytest.approx(10.0)
    moved = ledger.account(previous=_status(entry, week), week=next_week,
                           now=week.end + 2 * hour, live=[ledger.Metered(going, 5.0)])
    assert moved.used == pytest.approx(5.0)
    assert moved.charges[0].credits == pytest.approx(5.0)


def _user(name: str, *, default_workspace: str = "",
          budgets: dict[str, float] | None = None) -> object_pb2.Object:
    user = objects.new("User", name)
    user.metadata.resource_version = 1
    user.user.spec.defaults.workspace = default_workspace
    for zone, weekly in (budgets or {}).items():
        user.user.spec.credits.add(zone=zone, weekly=weekly)
    return user


def test_budget_per_zone_with_all_as_the_default() -> None:
    user = _user("amedeo.setti", budgets={"dc-rov-01": 500, "All": 50, "dc-test-01": 0})
    assert reconciler.budget_of(user, "dc-rov-01") == 500
    assert reconciler.budget_of(user, "dc-test-01") == 0
    assert reconciler.budget_of(user, "elsewhere") == 50
    assert reconciler.budget_of(_user("x", budgets={"a": 1}), "b") is None
    assert reconciler.budget_of(None, "a") is None


def test_whose_credit_a_workspace_uses() -> None:
    harness = Harness(reconciler.CONTROLLER, zone="z")
    controller = harness.reconciler
    users = harness.cache.store("User")
    for user in (_user("alice"), _user("bob", default_workspace="team-b"),
                 _user("carol", default_workspace="shared"),
                 _user("dave", default_workspace="shared")):
        users.upsert(user)
    assert controller.user_of("alice") == "alice"  # named like the user
    assert controller.user_of("team-b") == "bob"  # the one whose default it is
    assert controller.user_of("shared") == ""  # two users' default: nobody's
    assert controller.user_of("nobody") == ""
    assert controller.workspaces_of(users.get_named("bob"), "bob") == ["bob", "team-b"]
    assert controller.workspaces_of(None, "gone") == ["gone"]
