"""The credit controller: meter what each user's containers use, stop them when the
week's budget is spent.

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
5. when ``remaining`` is zero, stops the user's workloads in the zone
   (``spec.stopped``, as ``doractl stop``: the definition stays) with the
   condition ``CreditsExhausted`` and a Warning event; a workload created or
   started while the budget is spent is stopped the same way as soon as it is
   seen. When credit is available again (a larger budget, a new week) the
   condition goes and a Normal event says the workload may be started again;
6. asks to look again when the budget would run out at the current rate, at
   the end of the week, and every ``interval`` seconds while something runs
   (so ``used`` stays fresh for ``doractl credits``).

Whose credit a container uses: its workspace's user, i.e. the User named like
the workspace (the seeds give every user a private workspace of their name),
else the one user whose ``spec.default.workspace`` it is. Containers of other
workspaces (shared ones) are charged to nobody.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from dora.api import changes, conventions, errors, finalizers, objects
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import credits_pb2, object_pb2
from dora.controllers import conditions
from dora.controllers.credit import accrual, ledger
from dora.controllers.events import Recorder
from dora.runtime import reconcile
from dora.runtime.cache import Cache, Delta
from dora.runtime.clock import Clock
from dora.runtime.manager import Manager, Watch
from dora.runtime.reconcile import DONE, Result

log = reconcile.logger(__name__)

FINALIZER = "dora.io/credit"
CONDITION = conventions.CREDITS_EXHAUSTED_CONDITION
EXHAUSTED_REASON = "CreditsExhausted"
AVAILABLE_REASON = "CreditsAvailable"
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

    def __init__(self, *, client: Client, cache: Cache, clock: Clock, recorder: Recorder,
                 zone: str, week_start_day: int = 0, interval: float = 60.0) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock
        self.recorder = recorder
        self.zone = zone
        self.week_start_day = week_start_day
        self.interval = interval

    def register(self, manager: Manager, *, workers: int = 2) -> None:
        manager.store("User", indexers={_DEFAULT_WORKSPACE_INDEX: _by_default_workspace})
        # Users have no zone: a watch filtered by zone would drop every change to them.
        manager.informers["User"].zone = ""
        manager.store("Resourcecredit")
        manager.store("Usercredit")
        manager.store("Node")
        manager.store("Container", indexers={_WORKSPACE_INDEX: _by_workspace})
        manager.store("Workload", indexers={_WORKSPACE_INDEX: _by_workspace})
        manager.add_controller(self, workers=workers, watches=[
            Watch("User", self._user_keys),
            Watch("Resourcecredit", self._all_keys),
            Watch("Usercredit", self._usercredit_keys),
            Watch("Container", self._workspace_keys),
            Watch("Workload", self._workspace_keys),
        ])

    # -- keys -------------------------------------------------------------------------

    def _key(self, user: str) -> Ref:
        return Ref("Usercredit", self.zone, "", user)

    def _user_keys(self, delta: Delta) -> Iterable[Ref]:
        return [self._key(delta.object.metadata.name)]

    def _all_keys(self, delta: Delta) -> Iterable[Ref]:
        users = {u.metadata.name for u in self.cache.store("User")}
        users |= {u.metadata.name for u in self.cache.store("Usercredit")}
        return [self._key(name) for name in sorted(users)]

    def _usercredit_keys(self, delta: Delta) -> Iterable[Ref]:
        # Its status is ours: our own writes must not wake us (used moves every time).
        if (delta.old is not None and delta.new is not None
                and delta.old.metadata.generation == delta.new.metadata.generation):
            return []
        return [self._key(delta.object.metadata.name)]

    def _workspace_keys(self, delta: Delta) -> Iterable[Ref]:
        meta = delta.object.metadata
        user = self.user_of(meta.workspace)
        if not user and FINALIZER in meta.finalizers:
            # Its user is gone: still record what it cost, and let it go.
            user = meta.workspace
        return [self._key(user)] if user else []

    def user_of(self, workspace: str) -> str:
        """The user whose credit the workspace's containers use; "" for nobody."""
        users = self.cache.store("User")
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
        user = self.cache.store("User").get_named(name)
        budget = budget_of(user, self.zone)
        workspaces = self.workspaces_of(user, name)
        containers = [c for ws in workspaces
                      for c in self.cache.store("Container").by_index(_WORKSPACE_INDEX, ws)
                      if c.metadata.zone == self.zone]
        prices = accrual.Prices.of(self.cache.store("Resourcecredit"))
        live = [ledger.Metered(c, self._per_hour(c, prices)) for c in containers]
        await self._hold(live)
        current = self.cache.store("Usercredit").get(key)
        for _ in range(_RETRIES):
            now = self.clock.wall()
            week = accrual.week_of(now, start_day=self.week_start_day)
            previous = current.usercredit.status if current is not None else None
            account = ledger.account(previous=previous, week=week, now=now, live=live)
            if (current is None and budget is None and account.used <= 0
                    and account.running_per_hour <= 0):
                return DONE  # nothing to meter, nothing to say
            status = self._status(account, budget=budget, week=week, now=now, prices=prices)
            status.workspaces.extend(workspaces)
            try:
                current = await self._write(key, current, status)
                break
            except errors.Conflict:
                current = await self._fresh(key)
        else:
            raise errors.Conflict(f"{key}: the Usercredit kept changing")
        if current is not None:
            await self._release(containers, current.usercredit.status)
            await self._enforce(name, workspaces, status, week=week)
            return Result(requeue_after=self._next_look(status, now=now))
        return DONE

    def _per_hour(self, container: object_pb2.Object, prices: accrual.Prices) -> float:
        if not prices:
            return 0.0
        node = self.cache.store("Node").get_named(container.container.spec.node_name,
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

    async def _fresh(self, key: Ref) -> object_pb2.Object | None:
        try:
            return await self.client.get("Usercredit", key.name, zone=key.zone)
        except errors.NotFound:
            return None

    async def _write(self, key: Ref, current: object_pb2.Object | None,
                     status: credits_pb2.UsercreditStatus) -> object_pb2.Object:
        """Write ``status`` over ``current`` (created first if None), conditionally."""
        if current is None:
            obj = objects.new("Usercredit", key.name, zone=key.zone)
            obj.usercredit.spec.user = key.name
            try:
                current, _ = await self.client.apply(obj, create_only=True)
            except errors.AlreadyExists as exc:
                raise errors.Conflict(f"{key}: created meanwhile") from exc
            log.info("%s: metering %s in zone %s", key, key.name, key.zone)
        old = current.usercredit.status
        if _same(old, status) and (
                status.last_update.ToDatetime() - old.last_update.ToDatetime()
                < dt.timedelta(seconds=self.interval)):
            # Only time passed: ``used`` is written every ``interval``, not at every event.
            return current
        obj = objects.new("Usercredit", key.name, zone=key.zone)
        obj.metadata.resource_version = current.metadata.resource_version
        obj.usercredit.status.CopyFrom(status)
        written = await self.client.update_status(obj)
        if status.exhausted and not old.exhausted:
            log.warning("%s: %s spent %.4g of %.4g weekly credits", key, key.name, status.used,
                        status.weekly)
        return written

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

    # -- enforcement ------------------------------------------------------------------

    async def _enforce(self, user: str, workspaces: Sequence[str],
                       status: credits_pb2.UsercreditStatus, *, week: accrual.Week) -> None:
        workloads = [w for ws in workspaces
                     for w in self.cache.store("Workload").by_index(_WORKSPACE_INDEX, ws)
                     if w.metadata.zone == self.zone
                     and not w.metadata.HasField("deletion_timestamp")]
        for workload in workloads:
            marked = conditions.get(workload.workload.status.conditions, CONDITION)
            if status.exhausted:
                message = (f"{user} has spent the weekly budget of {status.weekly:g} credits "
                           f"in zone {self.zone}; the week restarts "
                           f"{week.end:%a %Y-%m-%d %H:%M} UTC")
                if not workload.workload.spec.stopped and await self._stop(workload):
                    self.recorder.warning(workload, EXHAUSTED_REASON, f"stopped: {message}")
                if marked is None or marked.message != message:
                    await self._mark(workload, message=message)
            elif marked is not None:
                await self._mark(workload, message=None)
                self.recorder.normal(
                    workload, AVAILABLE_REASON,
                    f"{user} has credits in zone {self.zone} again; "
                    f"`doractl start workload {workload.metadata.name}` runs it")

    async def _stop(self, workload: object_pb2.Object) -> bool:
        """``spec.stopped = true`` (a conditional apply, retried on a conflict); whether
        this call stopped it."""
        stopped_here = False

        def edit(updated: object_pb2.Object) -> bool:
            nonlocal stopped_here
            stopped_here = not updated.workload.spec.stopped
            updated.workload.spec.stopped = True
            return stopped_here

        written = await changes.apply_change(self.client, workload, edit, what="its spec",
                                             attempts=_RETRIES)
        if written is None or not stopped_here:
            return False
        log.info("%s stopped: its user's credits are spent", objects.ref_of(workload))
        return True

    async def _mark(self, workload: object_pb2.Object, *, message: str | None) -> None:
        """Set (or, with None, remove) the ``CreditsExhausted`` condition."""
        meta = workload.metadata
        obj = objects.new("Workload", meta.name, zone=meta.zone, workspace=meta.workspace)
        obj.metadata.resource_version = meta.resource_version
        obj.workload.status.CopyFrom(workload.workload.status)
        if message is None:
            conditions.remove(obj.workload.status.conditions, CONDITION)
        else:
            conditions.set_condition(obj.workload.status.conditions, type=CONDITION,
                                     status="True", reason=EXHAUSTED_REASON, message=message,
                                     now=self.clock.wall())
        try:
            await self.client.update_status(obj)
        except errors.NotFound:
            return
        except errors.Conflict:
            # The workload moved on; its watch event brings this user back here.
            log.debug("%s: changed while marking it; later", objects.ref_of(workload))

    def _next_look(self, status: credits_pb2.UsercreditStatus, *, now: dt.datetime) -> float:
        end = status.week_end.ToDatetime(tzinfo=dt.UTC)
        waits = [(end - now).total_seconds() + 0.001]
        if status.running_per_hour > 0:
            waits.append(self.interval)
            if not status.unlimited and not status.exhausted:
                waits.append(status.remaining / status.running_per_hour * accrual.HOUR)
        return max(0.001, min(waits))
