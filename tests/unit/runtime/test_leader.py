"""Leader election against a fake lease service, on a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio

from dora.api import errors
from dora.api.v1 import object_pb2, resources_pb2
from dora.runtime.clock import FakeClock
from dora.runtime.leader import LeaderElector

WatchEvent = resources_pb2.WatchEvent


class FakeLeases:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.objects: dict[str, object_pb2.Object] = {}
        self.ids = itertools.count(100)
        self.revoked: list[int] = []
        self.stalled = False
        self.changed = anyio.Event()

    async def grant_lease(self, ttl_seconds: int) -> tuple[int, int]:
        return next(self.ids), ttl_seconds

    async def apply(self, obj: object_pb2.Object, *, create_only: bool = False,
                    dry_run: bool = False) -> tuple[object_pb2.Object, int]:
        if create_only and obj.metadata.name in self.objects:
            raise errors.AlreadyExists("taken")
        self.objects[obj.metadata.name] = obj
        return obj, 1

    async def get(self, kind: str, name: str, **_: Any) -> object_pb2.Object:
        if name not in self.objects:
            raise errors.NotFound(name)
        return self.objects[name]

    def expire(self, lease_id: int) -> None:
        for name, obj in list(self.objects.items()):
            if obj.lease.spec.lease_id == lease_id:
                del self.objects[name]
        self.changed.set()
        self.changed = anyio.Event()

    async def revoke_lease(self, lease_id: int) -> None:
        self.revoked.append(lease_id)
        self.expire(lease_id)

    def alive(self, lease_id: int) -> bool:
        return any(o.lease.spec.lease_id == lease_id for o in self.objects.values())

    async def keep_lease_alive(self, lease_id: int, *, every: float) -> AsyncIterator[int]:
        while True:
            if self.stalled:
                await anyio.sleep_forever()
            yield 10 if self.alive(lease_id) else 0
            await self.clock.sleep(every)

    async def watch(self, kind: str, **_: Any) -> AsyncIterator[WatchEvent]:
        while True:
            before = set(self.objects)
            await self.changed.wait()
            for name in before - set(self.objects):
                event = WatchEvent(type=WatchEvent.DELETED)
                event.object.metadata.name = name
                yield event


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


def elector(leases: FakeLeases, clock: FakeClock, identity: str) -> LeaderElector:
    return LeaderElector(client=leases, zone="z", identity=identity, clock=clock, ttl=10)


async def test_one_leads_the_other_waits_and_takes_over_when_the_lease_goes() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    leading: list[str] = []

    def leader_of(identity: str) -> Any:
        async def lead() -> None:
            leading.append(identity)
            await anyio.sleep_forever()
        return lead

    one, two = elector(leases, clock, "one"), elector(leases, clock, "two")
    async with anyio.create_task_group() as group:
        group.start_soon(one.run, leader_of("one"))
        await settle()
        group.start_soon(two.run, leader_of("two"))
        await settle()
        assert leading == ["one"] and one.leading and not two.leading
        assert leases.objects["controllers"].lease.spec.holder == "one"

        leases.expire(leases.objects["controllers"].lease.spec.lease_id)  # one's lease is lost
        await settle()
        clock.advance(2.5)  # one's keep-alive hears TTL 0 and steps down
        await settle()
        assert leases.objects["controllers"].lease.spec.holder in ("one", "two")
        assert sum(e.leading for e in (one, two)) == 1
        assert leading[1:] and leading[1] in ("one", "two")
        group.cancel_scope.cancel()


async def test_a_leader_whose_keep_alive_stalls_steps_down_before_the_ttl() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    cancelled = anyio.Event()

    async def lead() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    one = elector(leases, clock, "one")
    async with anyio.create_task_group() as group:
        group.start_soon(one.run, lead)
        await settle()
        assert one.leading
        leases.stalled = True
        for _ in range(2):
            clock.advance(2.5)
            await settle()
        assert one.leading, "5 s without keep-alive is within 2/3 of the 10 s TTL"
        clock.advance(2.5)
        await settle()
        assert cancelled.is_set(), "7.5 s is past the renew deadline: stop reconciling"
        group.cancel_scope.cancel()


async def test_a_leader_steps_down_when_its_lease_object_is_taken() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)
    stopped = anyio.Event()

    async def lead() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    one = elector(leases, clock, "one")
    async with anyio.create_task_group() as group:
        group.start_soon(one.run, lead)
        await settle()
        taken = object_pb2.Object()
        taken.CopyFrom(leases.objects["controllers"])
        taken.lease.spec.holder = "intruder"
        leases.objects["controllers"] = taken
        clock.advance(2.5)
        await settle()
        assert stopped.is_set()
        group.cancel_scope.cancel()


async def test_a_graceful_stop_gives_the_lease_back() -> None:
    clock = FakeClock()
    leases = FakeLeases(clock)

    async def lead() -> None:
        return

    one = elector(leases, clock, "one")
    await one.run(lead)
    assert leases.revoked and "controllers" not in leases.objects
