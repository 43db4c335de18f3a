"""Credits (seed 001 "Credits", seed 004 "Credit checker") against real etcd, the
apiserver, the workload controller and scheduler, and the credit controller on a fake
clock.

Time is coherent across the pieces as in a real cluster: the credit controller, the
simulated agent (``startedAt``, ``finishedAt``) and the apiserver (``deletionTimestamp``)
all read one ``FakeClock``, so three hours pass in a test without sleeping and the
charges are exact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from dora.api import conventions, errors, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer
from dora.controllers import main as controllers_main
from dora.controllers.credit import reconciler as credit
from dora.runtime.clock import FakeClock
from tests.integration.controllers_harness import (
    Controllers,
    SimNode,
    TaskGroup,
    containers,
    eventually,
    group,
    workload,
)
from tests.integration.test_ctl_support import Ctl, Result, table

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

V100 = "Tesla V100-SXM2-16GB"
USER = "alice"
HOUR = 3600.0
# A Wednesday, so no week starts within the tests' hours.
WEDNESDAY = dt.datetime(2024, 1, 3, tzinfo=dt.UTC)


class MeteredNode(SimNode):
    """A simulated agent that reports when its containers started and stopped, by the
    test's clock: Running with ``startedAt``; on deletion, Exited with ``finishedAt``
    before it lets the Container go (as the real agent removes its finalizer once the
    Docker container is stopped)."""

    def __init__(self, client: Client, name: str, *, clock: FakeClock, **kwargs: object
                 ) -> None:
        super().__init__(client, name, **kwargs)  # type: ignore[arg-type]
        self.clock = clock

    async def _handle(self, container: object_pb2.Object) -> None:
        meta = container.metadata
        if container.container.spec.node_name != self.name:
            return
        if meta.HasField("deletion_timestamp"):
            await super()._handle(container)
            return
        if container.container.status.phase in ("", "Pending"):
            obj = objects.new("Container", meta.name, zone=meta.zone, workspace=meta.workspace)
            obj.metadata.resource_version = meta.resource_version
            obj.container.status.CopyFrom(container.container.status)
            obj.container.status.phase = "Running"
            obj.container.status.node_name = self.name
            obj.container.status.started_at.FromDatetime(self.clock.wall())
            await self.client.update_status(obj)


class CreditRun:
    """A credit controller (only it) for one zone on the fake clock; ``kill`` stops it
    at once, as a crash would (it writes nothing on the way out)."""

    def __init__(self, client: Client, clock: FakeClock, *, zone: str = "default") -> None:
        options = controllers_main.Options(
            zone=zone, controllers=("credit",), elect=False, resync=600.0,
            stall_timeout=30.0, credit_interval=60.0,
        )
        self.manager = controllers_main.build(client, options, clock=clock)
        self._scope = anyio.CancelScope()

    def start(self, group: TaskGroup) -> CreditRun:
        async def run() -> None:
            with self._scope:
                await self.manager.run()

        group.start_soon(run)
        return self

    def kill(self) -> None:
        self._scope.cancel()


@dataclass
class Cluster:
    client: Client
    clock: FakeClock
    group: TaskGroup
    node: MeteredNode


async def setup_user(client: Client, *, budgets: dict[str, float]) -> None:
    await client.apply(objects.new("Workspace", USER))
    user = objects.new("User", USER)
    user.user.spec.defaults.workspace = USER
    user.user.spec.defaults.zone = "default"
    for zone, weekly in budgets.items():
        user.user.spec.credits.add(zone=zone, weekly=weekly)
    await client.apply(user)


async def price(client: Client, zone: str, per_hour: float, *, product: str = V100,
                unit: str = "€") -> None:
    rc = objects.new("Resourcecredit", product, zone=zone)
    rc.resourcecredit.spec.product_name = product
    rc.resourcecredit.spec.credit.per.hour = per_hour
    rc.resourcecredit.spec.annotations["priceUnit"] = unit
    await client.apply(rc)


@pytest.fixture
async def clock(apiserver: APIServer, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(wall_start=WEDNESDAY)
    # The apiserver stamps deletionTimestamp by the same clock as everyone else.
    monkeypatch.setattr(apiserver.registry, "_now", fake.wall)
    return fake


async def gpu_cluster(client: Client, clock: FakeClock, group: TaskGroup, *,
                      weekly: float) -> Cluster:
    await setup_user(client, budgets={"default": weekly})
    await price(client, "default", 2.5)
    node = MeteredNode(client, "gpu-1", clock=clock, gpus=[V100] * 4)
    await node.start(group)
    Controllers(client, elect=False, controllers=("workload", "scheduler", "gc")).start(group)
    return Cluster(client, clock, group, node)


async def usercredit(client: Client, check: object = None, *, zone: str = "default",
                     what: str = "") -> object_pb2.Object:
    async def get() -> object_pb2.Object | None:
        uc = await client.get("Usercredit", USER, zone=zone)
        return uc if check is None or check(uc.usercredit.status) else None  # type: ignore[operator]
    found: object_pb2.Object = await eventually(get, what=what or "the Usercredit")
    return found


async def running(client: Client, name: str) -> object_pb2.Object:
    async def check() -> object_pb2.Object | None:
        live = await containers(client, name)
        ok = (len(live) == 1 and live[0].container.status.phase == "Running"
              and credit.FINALIZER in live[0].metadata.finalizers)
        return live[0] if ok else None
    found: object_pb2.Object = await eventually(check, what=f"{name} running, metered")
    return found


async def set_stopped(client: Client, name: str, stopped: bool) -> None:
    for _ in range(20):
        wl = await client.get("Workload", name, workspace=USER)
        wl.workload.spec.stopped = stopped
        wl.workload.ClearField("status")
        try:
            await client.apply(wl)
            return
        except errors.Conflict:
            continue
    pytest.fail(f"could not set stopped={stopped} on {name}")


def gpu_workload(name: str, gpus: int = 2) -> object_pb2.Object:
    return workload(name, gpus=gpus, products=[V100], workspace=USER)


def condition(wl: object_pb2.Object) -> object_pb2.Object | None:
    return next((c for c in wl.workload.status.conditions
                 if c.type == conventions.CREDITS_EXHAUSTED_CONDITION), None)


async def events(client: Client, reason: str) -> list[object_pb2.Object]:
    items, _ = await client.list("Event", zone="default", workspace=USER)
    return [e for e in items if e.event.spec.reason == reason]


async def test_two_gpus_at_2_5_for_3_hours_cost_15_across_a_restart(
        client: Client, clock: FakeClock, group: TaskGroup) -> None:
    await gpu_cluster(client, clock, group, weekly=100)
    meter = CreditRun(client, clock).start(group)
    await client.apply(gpu_workload("train"))
    started = clock.wall()
    await running(client, "train")
    uc = await usercredit(client, lambda s: s.running_per_hour == 5.0, what="5/h running")
    status = uc.usercredit.status
    assert (status.weekly, status.used, status.remaining) == (100, 0, 100)
    assert status.price_unit == "€"
    assert status.week_start.ToDatetime(tzinfo=dt.UTC) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

    clock.advance(1.5 * HOUR)  # the controller's next look comes due
    uc = await usercredit(client, lambda s: s.used > 0, what="1.5 h metered")
    assert uc.usercredit.status.used == pytest.approx(7.5)
    assert uc.usercredit.status.remaining == pytest.approx(92.5)

    # The controller dies; meanwhile the job runs 1.5 h more and is deleted.
    meter.kill()
    clock.advance(1.5 * HOUR)
    await client.delete("Workload", "train", workspace=USER)

    async def held() -> bool:
        left = await containers(client, "train", live=False)
        return bool(left) and all(
            c.metadata.finalizers == [credit.FINALIZER] for c in left)
    await eventually(held, what="the container held by dora.io/credit only")
    clock.advance(5 * HOUR)  # the dead time is not charged: the container is gone

    CreditRun(client, clock).start(group)
    uc = await usercredit(client, lambda s: s.running_per_hour == 0 and s.used > 7.5,
                          what="the whole run metered")
    assert uc.usercredit.status.used == pytest.approx(15.0)
    assert uc.usercredit.status.remaining == pytest.approx(85.0)

    async def gone() -> bool:
        return not await containers(client, "train", live=False)
    await eventually(gone, what="the container let go")
    # Gone for good: folded into settled, and still 15 after another look.
    clock.advance(60)
    uc = await usercredit(client, lambda s: not s.charges and s.settled > 0,
                          what="the charge settled")
    assert uc.usercredit.status.settled == pytest.approx(15.0)
    assert uc.usercredit.status.used == pytest.approx(15.0)
    assert started == WEDNESDAY


async def exhaust(cluster: Cluster) -> None:
    """Run ``train`` (5/h) until a budget of 10 is spent: two hours."""
    client, clock = cluster.client, cluster.clock
    await client.apply(gpu_workload("train"))
    await running(client, "train")
    await usercredit(client, lambda s: s.running_per_hour == 5.0, what="5/h running")
    clock.advance(HOUR)
    await usercredit(client, lambda s: s.used > 0, what="an hour metered")
    clock.advance(HOUR)

    async def stopped() -> object_pb2.Object | None:
        wl = await client.get("Workload", "train", workspace=USER)
        return wl if wl.workload.status.desired_replicas == 0 and condition(
            wl) is not None else None
    wl = await eventually(stopped, what="train held for lack of credit")
    # The workload controller holds it; its spec, the user's, stays as it was.
    assert not wl.workload.spec.stopped
    cond = condition(wl)
    assert cond is not None
    assert cond.reason == "CreditsExhausted"
    assert "weekly budget of 10 credits in zone default" in cond.message
    assert "Mon 2024-01-08 00:00 UTC" in cond.message
    uc = await usercredit(client, lambda s: s.exhausted and s.running_per_hour == 0,
                          what="exhausted, nothing running")
    assert uc.usercredit.status.used == pytest.approx(10.0)
    assert uc.usercredit.status.remaining == 0

    async def no_containers() -> bool:
        return not await containers(client, "train", live=False)
    await eventually(no_containers, what="train's container gone")
    assert (await events(client, "CreditsExhausted"))


async def blocked(client: Client, name: str) -> object_pb2.Object:
    async def check() -> object_pb2.Object | None:
        wl = await client.get("Workload", name, workspace=USER)
        if wl.workload.status.desired_replicas != 0 or condition(wl) is None:
            return None
        return wl if not await containers(client, name, live=False) else None
    found: object_pb2.Object = await eventually(check, what=f"{name} kept stopped")
    return found


async def test_a_spent_budget_stops_workloads_until_it_is_raised(
        client: Client, clock: FakeClock, group: TaskGroup) -> None:
    cluster = await gpu_cluster(client, clock, group, weekly=10)
    CreditRun(client, clock).start(group)
    await exhaust(cluster)

    # Stopped and started again, or a new one: admitted, and held with the same reason;
    # neither gets a container, not even for a moment.
    _, version = await client.list("Container", workspace=USER)
    added: list[str] = []

    async def record_added() -> None:
        async for event in client.watch("Container", workspace=USER,
                                        resource_version=version, bookmarks=False):
            if event.type == WatchEvent.ADDED:
                added.append(event.object.metadata.name)

    group.start_soon(record_added)
    await set_stopped(client, "train", True)
    await set_stopped(client, "train", False)
    await blocked(client, "train")
    await anyio.sleep(1)  # measured: a second on, still nothing created
    assert [n for n in added if n.startswith("train.")] == []
    created, _ = await client.apply(gpu_workload("second", gpus=1))
    assert created.metadata.uid
    wl = await blocked(client, "second")
    cond = condition(wl)
    assert cond is not None and "weekly budget of 10 credits" in cond.message
    await anyio.sleep(1)  # measured: a second on, still nothing created
    assert [n for n in added if n.startswith("second.")] == []

    # A larger budget: the reason goes, and it runs again.
    await setup_user(client, budgets={"default": 20})

    async def freed() -> bool:
        wl = await client.get("Workload", "train", workspace=USER)
        return condition(wl) is None
    await eventually(freed, what="the condition gone")
    assert (await events(client, "CreditsAvailable"))
    uc = await usercredit(client, lambda s: not s.exhausted, what="credit again")
    assert uc.usercredit.status.remaining == pytest.approx(10.0)
    await running(client, "train")
    wl = await client.get("Workload", "train", workspace=USER)
    assert not wl.workload.spec.stopped


async def test_the_next_week_lets_them_start_again(
        client: Client, clock: FakeClock, group: TaskGroup) -> None:
    cluster = await gpu_cluster(client, clock, group, weekly=10)
    CreditRun(client, clock).start(group)
    await exhaust(cluster)
    monday = dt.datetime(2024, 1, 8, tzinfo=dt.UTC)
    clock.advance((monday - clock.wall()).total_seconds())

    uc = await usercredit(client, lambda s: not s.exhausted, what="a new week")
    status = uc.usercredit.status
    assert status.week_start.ToDatetime(tzinfo=dt.UTC) == monday
    assert (status.used, status.remaining, status.settled) == (0, 10, 0)

    async def freed() -> bool:
        return condition(await client.get("Workload", "train", workspace=USER)) is None
    await eventually(freed, what="the condition gone")
    await running(client, "train")
    clock.advance(HOUR)
    uc = await usercredit(client, lambda s: s.used > 0, what="the new week metered")
    assert uc.usercredit.status.used == pytest.approx(5.0)


async def direct_container(client: Client, name: str, *, zone: str, hours: float,
                           start: dt.datetime) -> None:
    """A Container that ran 2 V100s for ``hours`` (as an agent reports it)."""
    template = gpu_workload("direct").workload.spec
    template.ClearField("replica")
    obj = objects.new("Container", name, zone=zone, workspace=USER)
    obj.container.spec.workload = "direct"
    obj.container.spec.version = 1
    obj.container.spec.template.CopyFrom(template)
    obj.container.spec.node_name = f"node-{zone}"
    for index in range(2):
        obj.container.spec.gpus.add(index=index, uuid=f"GPU-{zone}-{index}",
                                    product_name=V100.lower())
    created, _ = await client.apply(obj, create_only=True)
    status = objects.new("Container", name, zone=zone, workspace=USER)
    status.container.status.phase = "Exited"
    status.container.status.started_at.FromDatetime(start)
    status.container.status.finished_at.FromDatetime(start + dt.timedelta(hours=hours))
    await client.update_status(status)
    assert created.metadata.uid


async def test_prices_are_per_zone(client: Client, clock: FakeClock, group: TaskGroup,
                                   apiserver: APIServer, admin_token: str,
                                   tmp_path: Path) -> None:
    for zone in ("zb", "zc"):
        await client.apply(objects.new("Zone", zone))
    await setup_user(client, budgets={"default": 100, "zb": 100, "zc": 100})
    await price(client, "default", 2.5)
    await price(client, "zb", 1.0)
    # zc prices nothing: it charges nothing.
    start = clock.wall() - dt.timedelta(hours=4)
    for zone in ("default", "zb", "zc"):
        await direct_container(client, "job.0", zone=zone, hours=3, start=start)
        CreditRun(client, clock, zone=zone).start(group)
    used = {}
    for zone in ("default", "zb", "zc"):
        uc = await usercredit(client, lambda s: s.last_update.seconds > 0, zone=zone,
                              what=f"metered in {zone}")
        used[zone] = uc.usercredit.status.used
    assert used == {"default": pytest.approx(15.0), "zb": pytest.approx(6.0), "zc": 0}

    # What doractl shows of it.
    ctl = Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "h")
    result = await ctl.ok("credits", USER)
    assert result.lines[0] == f"credits of {USER}"
    rows = {r["ZONE"]: r for r in table(Result(0, "\n".join(result.lines[1:]), ""))}
    assert {z: (r["USED / WEEKLY"], r["RUNNING NOW"], r["STATE"]) for z, r in rows.items()} == {
        "default": ("15€ / 100€", "0€/h", "OK"),
        "zb": ("6€ / 100€", "0€/h", "OK"),
        "zc": ("0 / 100", "0/h", "OK"),
    }
    missing = await ctl("credits", "bob")
    assert missing.code == 0 and "no credits metered for bob" in missing.err
    ucs = {r["ZONE"]: r for r in table(await ctl.ok("get", "usercredits", "-A"))}
    assert (ucs["zb"]["NAME"], ucs["zb"]["USED"], ucs["zb"]["REMAINING"]) == (USER, "6€", "94€")
    rcs = {r["ZONE"]: r for r in table(await ctl.ok("get", "rc", "-A"))}
    assert (rcs["default"]["PRODUCT"], rcs["default"]["PRICE"]) == (V100, "2.5€/h")
    assert rcs["zb"]["PRICE"] == "1€/h"


async def test_the_default_build_runs_the_credit_controller(client: Client,
                                                            group: TaskGroup) -> None:
    """dora-controllers with its defaults meters too (real clock, one process)."""
    await setup_user(client, budgets={"default": 50})
    await price(client, "default", 2.5)
    node = SimNode(client, "gpu-1", gpus=[V100] * 2)
    await node.start(group)
    replica = Controllers(client)
    assert "credit" in [c.name for c in replica.manager.controllers]
    replica.start(group)
    await client.apply(gpu_workload("train", gpus=1))
    # SimNode reports Running without startedAt: by the status, nothing ran yet.
    # The controller creates the Usercredit, then reports on it: wait for the report.
    uc = await usercredit(client, lambda s: s.HasField("week_start"),
                          what="a Usercredit for alice, reported on")
    assert (uc.usercredit.status.weekly, uc.usercredit.status.used) == (50, 0)

    async def held() -> bool:
        live = await containers(client, "train")
        return bool(live) and credit.FINALIZER in live[0].metadata.finalizers
    await eventually(held, what="the GPU container held for metering")
