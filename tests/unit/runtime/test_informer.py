"""Informers: list, then watch from the list's version; relist when the version is gone;
reopen a silent watch (inside a revision of several events, too); resync, which
repairs a cache that diverged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from dora.api import errors
from dora.api.v1 import object_pb2, resources_pb2
from dora.runtime.cache import Delta, Store
from dora.runtime.clock import FakeClock
from dora.runtime.informer import Informer
from tests.unit.controllers.helpers import obj

WatchEvent = resources_pb2.WatchEvent
HANG = "hang"


def event(kind: int, o: object_pb2.Object) -> WatchEvent:
    return WatchEvent(type=kind, object=o)


class FakeCluster:
    """Lists answer from a script; each watch plays the next script of events, then
    raises what it ends with (an error) or hangs."""

    def __init__(self, lists: list[tuple[list[object_pb2.Object], int]],
                 watches: list[list[Any]]) -> None:
        self.lists = lists
        self.watches = watches
        self.watched_from: list[int] = []
        self.resumed_at: list[tuple[int, int]] = []

    async def list(self, kind: str, **_: Any) -> tuple[list[object_pb2.Object], int]:
        return self.lists.pop(0)

    async def watch(self, kind: str, *, resource_version: int = 0, resume_index: int = 0,
                    **_: Any) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(resource_version)
        self.resumed_at.append((resource_version, resume_index))
        script = self.watches.pop(0) if self.watches else [HANG]
        for item in script:
            if item == HANG:
                await anyio.sleep_forever()
            if isinstance(item, Exception):
                raise item
            yield item


async def run_until(informer: Informer, condition: Any, *, seconds: float = 2.0) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(informer.run)
        with anyio.fail_after(seconds):
            while not condition():  # noqa: ASYNC110 - polls what the handlers saw
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()


async def test_list_then_watch_from_its_version_and_relist_when_gone() -> None:
    cluster = FakeCluster(
        lists=[([obj("Workload", "a", rv=3)], 10),
               ([obj("Workload", "a", rv=12), obj("Workload", "c", rv=13)], 20)],
        watches=[
            [event(WatchEvent.ADDED, obj("Workload", "b", rv=11)),
             event(WatchEvent.BOOKMARK, obj("Workload", "", rv=15)),
             errors.Gone("compacted")],
        ],
    )
    store = Store("Workload")
    informer = Informer(client=cluster, store=store, clock=FakeClock(), resync=0)
    seen: list[tuple[str, bool, bool]] = []
    informer.add_handler(lambda d: seen.append((d.object.metadata.name, d.old is None,
                                                d.new is None)))
    await run_until(informer, lambda: informer.relists == 2 and len(cluster.watched_from) == 2)
    assert cluster.watched_from == [10, 20]
    assert sorted(o.metadata.name for o in store) == ["a", "c"]
    assert seen[:2] == [("a", True, False), ("b", True, False)]
    assert sorted(seen[2:]) == [("a", False, False), ("b", False, True), ("c", True, False)]
    assert informer.version == 20


async def test_a_deleted_event_hands_over_the_last_state() -> None:
    gone = obj("Workload", "a", rv=12)
    gone.metadata.labels["last"] = "yes"
    cluster = FakeCluster(lists=[([obj("Workload", "a", rv=3)], 10)],
                          watches=[[event(WatchEvent.DELETED, gone), HANG]])
    informer = Informer(client=cluster, store=Store("Workload"), clock=FakeClock(), resync=0)
    deltas: list[Delta] = []
    informer.add_handler(deltas.append)
    await run_until(informer, lambda: len(deltas) == 2)
    assert deltas[1].new is None and deltas[1].old is not None
    assert deltas[1].old.metadata.labels["last"] == "yes"


async def test_a_silent_watch_is_reopened_from_the_last_version() -> None:
    cluster = FakeCluster(
        lists=[([], 10)],
        watches=[[event(WatchEvent.ADDED, obj("Workload", "a", rv=11)), HANG], [HANG]],
    )
    informer = Informer(client=cluster, store=Store("Workload"), clock=FakeClock(),
                        resync=0, stall_timeout=0.1)
    await run_until(informer, lambda: len(cluster.watched_from) >= 2)
    assert cluster.watched_from[:2] == [10, 11]
    assert informer.relists == 1, "a silent watch is resumed, not relisted"


async def test_errors_relist_with_backoff_on_the_clock() -> None:
    clock = FakeClock()
    cluster = FakeCluster(lists=[([], 10), ([], 11)],
                          watches=[[errors.Unavailable("apiserver down")]])
    informer = Informer(client=cluster, store=Store("Workload"), clock=clock, resync=0,
                        retry=5)
    async with anyio.create_task_group() as group:
        group.start_soon(informer.run)
        await anyio.wait_all_tasks_blocked()
        assert informer.relists == 1
        clock.advance(4.9)
        await anyio.wait_all_tasks_blocked()
        assert informer.relists == 1
        clock.advance(0.1)
        await anyio.wait_all_tasks_blocked()
        assert informer.relists == 2
        group.cancel_scope.cancel()


async def test_resync_hands_every_object_to_the_handlers_again() -> None:
    clock = FakeClock()
    listing = [obj("Workload", "a"), obj("Workload", "b")]
    cluster = FakeCluster(lists=[(listing, 10), (listing, 10)], watches=[])
    informer = Informer(client=cluster, store=Store("Workload"), clock=clock, resync=30)
    names: list[str] = []
    informer.add_handler(lambda d: names.append(d.object.metadata.name))
    async with anyio.create_task_group() as group:
        group.start_soon(informer.run)
        await anyio.wait_all_tasks_blocked()
        assert sorted(names) == ["a", "b"]
        clock.advance(30)
        await anyio.wait_all_tasks_blocked()
        assert sorted(names) == ["a", "a", "b", "b"]
        group.cancel_scope.cancel()


async def test_a_failing_handler_does_not_stop_the_others() -> None:
    cluster = FakeCluster(lists=[([obj("Workload", "a")], 10)], watches=[])
    informer = Informer(client=cluster, store=Store("Workload"), clock=FakeClock(), resync=0)
    got: list[str] = []

    def broken(delta: Delta) -> None:
        raise RuntimeError("bug")

    informer.add_handler(broken)
    informer.add_handler(lambda d: got.append(d.object.metadata.name))
    await run_until(informer, lambda: got == ["a"])


def indexed(kind: int, o: object_pb2.Object, index: int) -> WatchEvent:
    return WatchEvent(type=kind, object=o, revision_index=index)


@pytest.mark.parametrize(("received", "resumed_at"), [
    (1, (11, 1)),  # one of revision 11's three events: resume after it
    (2, (11, 2)),
    (3, (11, 3)),  # all three: nothing of 11 is sent again
])
async def test_a_silent_watch_resumes_inside_a_revision_of_several_events(
    received: int, resumed_at: tuple[int, int]
) -> None:
    events = [indexed(WatchEvent.ADDED, obj("Workload", name, rv=11), index)
              for index, name in enumerate("abc")]
    cluster = FakeCluster(lists=[([], 10)], watches=[[*events[:received], HANG], [HANG]])
    informer = Informer(client=cluster, store=Store("Workload"), clock=FakeClock(),
                        resync=0, stall_timeout=0.1)
    await run_until(informer, lambda: len(cluster.resumed_at) >= 2)
    assert cluster.resumed_at[:2] == [(10, 0), resumed_at]
    # A bookmark closes the revision: the next resume is after all of it.
    informer._handle(WatchEvent(type=WatchEvent.BOOKMARK, object=obj("Workload", "", rv=11)))
    assert (informer.version, informer.resume_index) == (11, 0)


async def test_resync_repairs_a_cache_that_diverged_from_the_cluster() -> None:
    clock = FakeClock()
    # The first list has a, b, c; the cluster then deletes b, changes c and adds d
    # while the watch (a bug's stand-in) says nothing.
    cluster = FakeCluster(
        lists=[([obj("Workload", "a", rv=3), obj("Workload", "b", rv=4),
                 obj("Workload", "c", rv=5)], 10),
               ([obj("Workload", "a", rv=3), obj("Workload", "c", rv=12),
                 obj("Workload", "d", rv=13)], 20)],
        watches=[[HANG], [HANG]],
    )
    store = Store("Workload")
    informer = Informer(client=cluster, store=store, clock=clock, resync=30)
    deltas: list[Delta] = []
    informer.add_handler(deltas.append)
    async with anyio.create_task_group() as group:
        group.start_soon(informer.run)
        await anyio.wait_all_tasks_blocked()
        assert len(deltas) == 3
        deltas.clear()
        clock.advance(30)
        await anyio.wait_all_tasks_blocked()
        assert sorted(o.metadata.name for o in store) == ["a", "c", "d"]
        assert informer.repaired == 3
        changes = {(d.object.metadata.name, d.old is None, d.new is None,
                    d.old is d.new) for d in deltas}
        assert changes == {("b", False, True, False), ("c", False, False, False),
                           ("d", True, False, False), ("a", False, False, True)}
        assert len(deltas) == 4, "every object once: the repairs, then a's resync"
        assert cluster.watched_from == [10, 20], "the watch goes on from the new list"
        group.cancel_scope.cancel()


async def test_an_object_whose_labels_stop_matching_leaves_the_store_as_if_deleted() -> None:
    bound = obj("Container", "c", rv=3)
    bound.metadata.labels["dora.io/node"] = "n1"
    moved = obj("Container", "c", rv=12)
    moved.metadata.labels["dora.io/node"] = "n2"
    cluster = FakeCluster(lists=[([bound], 10)],
                          watches=[[event(WatchEvent.MODIFIED, moved), HANG]])
    store = Store("Container")
    informer = Informer(client=cluster, store=store, clock=FakeClock(), resync=0,
                        label_selector="dora.io/node=n1")
    deltas: list[Delta] = []
    informer.add_handler(deltas.append)
    await run_until(informer, lambda: len(deltas) == 2)
    assert len(store) == 0
    assert deltas[1].new is None and deltas[1].old == moved  # its last state
