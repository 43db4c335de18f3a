"""Serving several zones from one process, and telling users about zones nobody serves.

A zone is served when some ``dora-controllers`` leads it: its leader holds the
Lease ``controllers`` in that zone (``runtime.leader``). That Lease is the record
of which zones are served; nothing else is written to say so.

``run_zones`` runs one ``Manager`` per zone (each with its own caches and its own
leader election) for ``--zones a,b``; for ``--zones all`` it looks at the Zones
every ``poll`` seconds and starts a manager for each new one (and stops the
manager of a zone that was deleted).

``UnservedZones`` is the watchdog every ``dora-controllers`` process runs over all
zones: a Workload in a zone without a ``controllers`` Lease, for longer than
``grace`` seconds, gets the condition ``ZoneUnserved`` (status True) and a Warning
event saying which zone nobody serves and how to serve it. The zone's own workload
controller removes the condition once it runs there (``workload.status``). The
watchdog is leader-elected through the Lease ``zones-watchdog`` in the first zone
the process serves; processes serving different first zones may both watch, which
costs a repeated, identical write at worst (event names are deterministic, so an
event is counted again rather than duplicated).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio

from dora.api import conventions, errors, kinds, objects
from dora.api.client import Client, ResourceClient
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers import conditions
from dora.runtime.cache import Cache
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, Watch, own_key
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import ControllerSpec, EventRecorder, Option, Setup
from dora.runtime.status import write_status

log = logging.getLogger(__name__)

ALL = "all"
ZONE_UNSERVED = conventions.ZONE_UNSERVED_CONDITION
WATCHDOG_LEASE = "zones-watchdog"
_ZONE_INDEX = "zone"


def parse_zones(text: str) -> tuple[str, ...]:
    """``a,b`` -> ("a", "b"); ``all`` -> ("all",). Raise ``ValueError`` if empty."""
    zones = tuple(dict.fromkeys(z.strip() for z in text.split(",") if z.strip()))
    if not zones:
        raise ValueError("--zones names no zone (a,b or all)")
    if ALL in zones and len(zones) > 1:
        raise ValueError("--zones all cannot be combined with zone names")
    return zones


def by_zone(obj: object_pb2.Object) -> list[str]:
    return [obj.metadata.zone]


def controllers_lease(event: Event) -> bool:
    return event.object.metadata.name == conventions.CONTROLLERS_LEASE


class UnservedZones:
    """Marks the Workloads of zones no ``dora-controllers`` leads."""

    name = "zones"

    def __init__(self, *, client: ResourceClient, cache: Cache, clock: Clock,
                 recorder: EventRecorder, grace: float = 5.0) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock
        self.recorder = recorder
        self.grace = grace

    @staticmethod
    def build(setup: Setup) -> UnservedZones:
        return UnservedZones(client=setup.client, cache=setup.cache, clock=setup.clock,
                             recorder=setup.recorder, grace=setup.option("unserved_grace"))

    def workloads_of_zone(self, event: Event) -> list[Ref]:
        store = self.cache.store(kinds.WORKLOAD)
        return [objects.ref_of(w) for w in store.by_index(_ZONE_INDEX,
                                                           event.object.metadata.zone)]

    def served(self, zone: str) -> bool:
        lease = self.cache.store(kinds.LEASE).get_named(conventions.CONTROLLERS_LEASE,
                                                        zone=zone)
        return lease is not None and bool(lease.lease.spec.holder)

    async def reconcile(self, *, key: Ref) -> Result:
        workload = self.cache.store(kinds.WORKLOAD).get(key)
        if workload is None or workload.metadata.HasField("deletion_timestamp"):
            return DONE
        if self.served(key.zone):
            return DONE
        now = self.clock.wall()
        created = workload.metadata.creation_timestamp
        age = now.timestamp() - (created.seconds + created.nanos / 1e9)
        if age < self.grace:
            return Result(requeue_after=self.grace - age)
        condition = conditions.get(workload.workload.status.conditions, ZONE_UNSERVED)
        if condition is not None and condition.status == "True":
            return DONE
        message = (f"no dora-controllers serves zone {key.zone}: nothing schedules or "
                   f"runs this workload until one does (dora-controllers --zones "
                   f"{key.zone}, or --zones all)")

        def unserved(obj: object_pb2.Object) -> None:
            conditions.set_condition(obj.workload.status.conditions, type=ZONE_UNSERVED,
                                     status="True", reason="NoControllers", message=message,
                                     now=now)

        if await write_status(self.client, workload, unserved) is None:
            return DONE
        self.recorder.warning(workload, "ZoneUnserved", message)
        log.warning("%s: %s", key, message)
        return DONE


async def run_zones(*, zones: Sequence[str],
                    run_zone: Callable[[str], Coroutine[Any, Any, None]],
                    client: Client, poll: float = 2.0) -> None:
    """Run ``run_zone(zone)`` for each zone; for ``("all",)``, for each Zone there is."""
    async with anyio.create_task_group() as group:
        if tuple(zones) != (ALL,):
            for zone in zones:
                group.start_soon(run_zone, zone)
            return
        running: dict[str, anyio.CancelScope] = {}

        async def one(zone: str, scope: anyio.CancelScope) -> None:
            with scope:
                await run_zone(zone)

        while True:
            try:
                items, _ = await client.list(kinds.ZONE)
            except errors.Unavailable as exc:
                log.warning("listing the zones: %s", exc)
                items = None
            if items is not None:
                names = {z.metadata.name for z in items}
                for zone in sorted(names - running.keys()):
                    log.info("serving zone %s", zone)
                    running[zone] = anyio.CancelScope()
                    group.start_soon(one, zone, running[zone])
                for zone in sorted(running.keys() - names):
                    log.info("zone %s is gone: no longer serving it", zone)
                    running.pop(zone).cancel()
            await anyio.sleep(poll)


# Not in the registry: it runs in a manager of its own over every zone
# (``main.watchdog``), not in each zone's.
WATCHDOG = ControllerSpec[UnservedZones](
    name="zones",
    help="marks the Workloads of zones no dora-controllers serves",
    build=UnservedZones.build,
    watches=[
        Watch(kinds.WORKLOAD, own_key),
        Watch(kinds.LEASE, UnservedZones.workloads_of_zone, predicate=controllers_lease),
    ],
    indexes={kinds.WORKLOAD: {_ZONE_INDEX: by_zone}},
    workers=2,
    options=[Option("unserved_grace", 5.0, "seconds a Workload may sit in a zone no "
                    "dora-controllers serves before it is marked ZoneUnserved")],
)
