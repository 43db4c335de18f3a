"""The credit controller: meter what each user's containers use in the week.

One key per user and zone (``Usercredit/<zone>//<user>``). A reconcile reads,
from the cache, the user's budget in the zone (``User.spec.credits``), the
zone's prices (``Resourcecredit``), the user's containers and workloads, and the
Usercredit as last written, and then

1. computes the week's account from scratch (``ledger.account``): the ledger
   of containers being deleted, ``settled`` for those gone, and every live
   container's window at its price. Nothing depends on when this controller
   happened to run, so a restart loses nothing and counts nothing twice;
2. puts the finalizer ``dora.io/credit`` on every bound container that costs
   something, so none can disappear before its charge is in the ledger;
3. writes the Usercredit status, conditional on the resourceVersion it read
   (on a conflict it reads the Usercredit again and starts over: the ledger is
   never overwritten by an older one);
4. only then removes the finalizer from containers being deleted whose charge
   the written ledger holds;
5. asks to look again when the budget would run out at the current rate, at
   the end of the week, and every ``interval`` seconds while something runs
   (so ``used`` stays fresh for ``doractl credits``).

It writes Usercredits only (and its finalizer on containers): whether
the budget is spent (``status.exhausted``) and which workspaces it pays for
(``status.workspaces``). The workload and task controllers read that through
their informers and alone decide that what they own runs nothing meanwhile
(``dora.controllers.payers``).

Whose credit a container uses: its workspace's user, i.e. the User named like
the workspace (the seeds give every user a private workspace of their name),
else the one user whose ``spec.default.workspace`` it is. Containers of other
workspaces (shared ones) are charged to nobody.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from dora.api import conventions, errors, finalizers, kinds, objects
from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.api.v1 import credits_pb2, object_pb2
from dora.controllers.credit import accrual, ledger
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, Watch, generation_changed
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import EventRecorder, Option, Setup, more_than
from dora.runtime.status import write_status

log = reconcile.logger(__name__)

FINALIZER = "dora.io/credit"
ALL_ZONES = "All"
_WORKSPACE_INDEX = "credit-workspace"
_DEFAULT_WORKSPACE_INDEX = "credit-default-workspace"
_RETRIES = 8
# How close to zero counts as spent (floating point of rate * seconds).
_EPSILON = 1e-9


def _by_workspace(obj: object_pb2.Object) -> list[str]:
    return [obj.metadata.workspace]


def _by_default_workspace(obj: object_pb2.Object) -> list[str]:
    workspace = obj.user.spec.defaults.workspace
    return [workspace] if workspace else []


def _check_week_start(day: str) -> None:
    accrual.weekday(day)  # raises ValueError naming --credit-week-start


def budget_of(user: object_pb2.Object | None, zone: str) -> float | None:
    """The user's weekly credits in ``zone``; None when they have no budget there."""
    if user is None:
        return None
    budgets = {b.zone: b.weekly for b in user.user.spec.credits}
    if zone in budgets:
        return budgets[zone]
    return budgets.get(ALL_ZONES)


def _same(old: credits_pb2.UsercreditStatus, new: credits_pb2.UsercreditStatus) -> bool:
    """Whether two statuses differ at most in what time alone moves."""
    a, b = credits_pb2.UsercreditStatus(), credits_pb2.UsercreditStatus()
    a.CopyFrom(old)
    b.CopyFrom(new)
    for status in (a, b):
        for field in ("used", "remaining", "last_update"):
            status.ClearField(field)
    return a == b


class CreditController:
    name = "credit"

    def __init__(self, *, client: ResourceClient, cache: Cache, clock: Clock,
                 recorder: EventRecorder, zone: str, week_start_day: int = 0,
                 interval: float = 60.0) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock
        self.recorder = recorder
        self.zone = zone
        self.week_start_day = week_start_day
        self.interval = interval

    @staticmethod
    def build(setup: Setup) -> CreditController:
        return CreditController(
            client=setup.client, cache=setup.cache, clock=setup.clock,
            recorder=setup.recorder, zone=setup.zone,
            week_start_day=accrual.weekday(setup.option("credit_week_start")),
            interval=setup.option("credit_interval"))

    # -- keys -------------------------------------------------------------------------

    def _key(self, user: str) -> Ref:
        return Ref(kinds.USERCREDIT, self.zone, "", user)

    def user_keys(self, event: Event) -> list[Ref]:
        return [self._key(event.object.metadata.name)]

    def all_keys(self, event: Event) -> list[Ref]:
        users = {u.metadata.name for u in self.cache.store(kinds.USER)}
        users |= {u.metadata.name for u in self.cache.store(kinds.USERCREDIT)}
        return [self._key(name) for name in sorted(users)]

    def workspace_keys(self, event: Event) -> list[Ref]:
        meta = event.object.metadata
        user = self.user_of(meta.workspace)
        if not user and FINALIZER in meta.finalizers:
            # Its user is gone: still record what it cost, and let it go.
            user = meta.workspace
        return [self._key(user)] if user else []

    def user_of(self, workspace: str) -> str:
        """The user whose credit the workspace's containers use; "" for nobody."""
        users = self.cache.store(kinds.USER)
        if users.get_named(workspace) is not None:
            return workspace
        owners = users.by_index(_DEFAULT_WORKSPACE_INDEX, workspace)
        return owners[0].metadata.name if len(owners) == 1 else ""

    def workspaces_of(self, user: object_pb2.Object | None, name: str) -> list[str]:
        found = [name]
        default = user.user.spec.defaults.workspace if user is not None else ""
        if default and default != name and self.user_of(default) == name:
            found.append(default)
        return found

    # -- the reconcile ----------------------------------------------------------------

    async def reconcile(self, *, key: Ref) -> Result:
        name = key.name
        user = self.cache.store(kinds.USER).get_named(name)
        budget = budget_of(user, self.zone)
        workspaces = self.workspaces_of(user, name)
        containers = [c for ws in workspaces
                      for c in self.cache.store(kinds.CONTAINER).by_index(_WORKSPACE_INDEX, ws)
                      if c.metadata.zone == self.zone]
        prices = accrual.Prices.of(self.cache.store(kinds.RESOURCECREDIT))
        live = [ledger.Metered(c, self._per_hour(c, prices)) for c in containers]
        await self._hold(live)
        current = self.cache.store(kinds.USERCREDIT).get(key)
        now = self.clock.wall()
        week = accrual.week_of(now, start_day=self.week_start_day)
        made = credits_pb2.UsercreditStatus()

        def meter(obj: object_pb2.Object) -> None:
            """The week's account from scratch, on the Usercredit as it is now."""
            previous = obj.usercredit.status if obj.metadata.resource_version else None
            account = ledger.account(previous=previous, week=week, now=now, live=live)
            status = self._status(account, budget=budget, week=week, now=now, prices=prices)
            status.workspaces.extend(workspaces)
            made.CopyFrom(status)
            old = obj.usercredit.status
            if obj.metadata.resource_version and _same(old, status) and (
                    now - old.last_update.ToDatetime(tzinfo=dt.UTC)
                    < dt.timedelta(seconds=self.interval)):
                # Only time passed: ``used`` is written every ``interval``, not at
                # every event.
                return
            obj.usercredit.status.CopyFrom(status)

        if current is None:
            meter(objects.new(kinds.USERCREDIT, name, zone=key.zone))
            if budget is None and made.used <= 0 and made.running_per_hour <= 0:
                return DONE  # nothing to meter, nothing to say
            current = await self._create(key)
        was_exhausted = current.usercredit.status.exhausted
        written = await write_status(self.client, current, meter, attempts=_RETRIES)
        if written is None:
            return DONE
        if made.exhausted and not was_exhausted:
            log.warning("%s: %s spent %.4g of %.4g weekly credits", key, name, made.used,
                        made.weekly)
        await self._release(containers, written.usercredit.status)
        return Result(requeue_after=self._next_look(made, now=now))

    def _per_hour(self, container: object_pb2.Object, prices: accrual.Prices) -> float:
        if not prices:
            return 0.0
        node = self.cache.store(kinds.NODE).get_named(container.container.spec.node_name,
                                                  zone=self.zone)
        cpu = node.node.status.cpu.product_name if node is not None else ""
        return accrual.per_hour(container, prices=prices, cpu_product=cpu)

    def _status(self, account: ledger.Account, *, budget: float | None, week: accrual.Week,
                now: dt.datetime, prices: accrual.Prices) -> credits_pb2.UsercreditStatus:
        status = credits_pb2.UsercreditStatus()
        status.weekly = budget or 0.0
        status.unlimited = budget is None
        status.used = account.used
        status.remaining = 0.0 if budget is None else max(0.0, budget - account.used)
        status.exhausted = budget is not None and account.used >= budget - _EPSILON
        status.week_start.FromDatetime(week.start)
        status.week_end.FromDatetime(week.end)
        status.running_per_hour = account.running_per_hour
        status.settled = account.settled
        status.price_unit = prices.unit
        status.charges.extend(account.charges)
        status.last_update.FromDatetime(now)
        return status

    async def _create(self, key: Ref) -> object_pb2.Object:
        """The user's Usercredit in the zone, made now (or found made meanwhile)."""
        obj = objects.new(kinds.USERCREDIT, key.name, zone=key.zone)
        obj.usercredit.spec.user = key.name
        try:
            created, _ = await self.client.apply(obj, create_only=True)
        except errors.AlreadyExists:
            return await self.client.get(kinds.USERCREDIT, key.name, zone=key.zone)
        log.info("%s: metering %s in zone %s", key, key.name, key.zone)
        return created

    # -- finalizers -------------------------------------------------------------------

    async def _hold(self, live: Sequence[ledger.Metered]) -> None:
        """Put our finalizer on the bound containers that cost something."""
        for metered in live:
            container = metered.container
            meta = container.metadata
            if (metered.per_hour <= 0 or FINALIZER in meta.finalizers
                    or meta.HasField("deletion_timestamp")
                    or conventions.NODE_LABEL not in meta.labels):
                continue
            await self._change_finalizers(container, add=True)

    async def _release(self, containers: Sequence[object_pb2.Object],
                       status: credits_pb2.UsercreditStatus) -> None:
        """Let containers being deleted go once the written ledger holds their charge."""
        recorded = {c.uid for c in status.charges}
        for container in containers:
            meta = container.metadata
            if not meta.HasField("deletion_timestamp") or FINALIZER not in meta.finalizers:
                continue
            if meta.uid in recorded or accrual.window(container) is None:
                await self._change_finalizers(container, add=False)

    async def _change_finalizers(self, container: object_pb2.Object, *, add: bool) -> None:
        await finalizers.change(self.client, container, FINALIZER, add=add, attempts=_RETRIES)

    def _next_look(self, status: credits_pb2.UsercreditStatus, *, now: dt.datetime) -> float:
        end = status.week_end.ToDatetime(tzinfo=dt.UTC)
        waits = [(end - now).total_seconds() + 0.001]
        if status.running_per_hour > 0:
            waits.append(self.interval)
            if not status.unlimited and not status.exhausted:
                waits.append(status.remaining / status.running_per_hour * accrual.HOUR)
        return max(0.001, min(waits))


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="credit",
    help="meters what each user's containers use against the weekly budget (Usercredit)",
    build=CreditController.build,
    watches=[
        Watch(kinds.USER, CreditController.user_keys),
        Watch(kinds.RESOURCECREDIT, CreditController.all_keys),
        # Its status is ours: our own writes must not wake us (used moves every time).
        Watch(kinds.USERCREDIT, CreditController.user_keys, predicate=generation_changed),
        Watch(kinds.CONTAINER, CreditController.workspace_keys),
    ],
    indexes={
        kinds.USER: {_DEFAULT_WORKSPACE_INDEX: _by_default_workspace},
        kinds.CONTAINER: {_WORKSPACE_INDEX: _by_workspace},
    },
    reads=[kinds.NODE],  # a node's CPU model prices its containers' cores
    workers=2,
    options=[
        Option("credit_week_start", "monday", "the day (UTC) the credit week starts",
               check=_check_week_start),
        Option("credit_interval", 60.0,
               "seconds between credit updates while a user's containers run",
               check=more_than(0, "--credit-interval", " seconds")),
    ],
    order=50,
))
