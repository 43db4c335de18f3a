"""The framework parts of dora.runtime: event types, predicates, key mappers, the
registry, index clashes, the status writer, and the fake client under an informer."""

from __future__ import annotations

import anyio
import pytest

from dora.api import errors, kinds, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.runtime import handlers
from dora.runtime.cache import Delta, EventType, IndexClash, Store, by_node
from dora.runtime.clock import FakeClock
from dora.runtime.informer import Informer
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import ControllerSpec, Option, Registry, Setup, at_least
from dora.runtime.status import write_status
from dora.runtime.testing import FakeClient
from tests.unit.controllers.helpers import obj


def _changed(old: object_pb2.Object, **changes: object) -> object_pb2.Object:
    new = object_pb2.Object()
    new.CopyFrom(old)
    new.metadata.resource_version += 1
    for field, value in changes.items():
        setattr(new.metadata, field, value)
    return new


def test_event_types() -> None:
    a = obj(kinds.CONTAINER, "a")
    b = _changed(a)
    assert Delta(None, a).type is EventType.ADDED
    assert Delta(a, b).type is EventType.UPDATED
    assert Delta(a, None).type is EventType.DELETED
    assert Delta(a, a).type is EventType.RESYNC


def test_predicates_judge_updates_and_pass_the_rest() -> None:
    a = obj(kinds.WORKLOAD, "a")
    same = _changed(a)
    newer = _changed(a, generation=a.metadata.generation + 1)
    relabelled = _changed(a)
    relabelled.metadata.labels["team"] = "x"
    assert not handlers.generation_changed(Delta(a, same))
    assert handlers.generation_changed(Delta(a, newer))
    assert handlers.generation_changed(Delta(None, a))
    assert handlers.generation_changed(Delta(a, None))
    assert handlers.labels_changed(Delta(a, relabelled))
    assert not handlers.labels_changed(Delta(a, newer))
    either = handlers.any_of(handlers.generation_changed, handlers.labels_changed)
    assert either(Delta(a, relabelled)) and not either(Delta(a, same))
    spec = _changed(a)
    spec.workload.spec.replica.count = 3
    assert handlers.spec_changed(Delta(a, spec)) and not handlers.spec_changed(Delta(a, same))


def test_owner_key_maps_to_the_controlling_owner_old_and_new() -> None:
    mapper = handlers.owner_key(kinds.WORKLOAD)
    old = obj(kinds.CONTAINER, "c", owner="one")
    new = obj(kinds.CONTAINER, "c", owner="two", rv=2)
    assert list(mapper(None, Delta(None, old))) == [Ref(kinds.WORKLOAD, "z", "w", "one")]
    assert list(mapper(None, Delta(old, new))) == [Ref(kinds.WORKLOAD, "z", "w", "one"),
                                                   Ref(kinds.WORKLOAD, "z", "w", "two")]
    assert list(handlers.owner_key(kinds.TASK)(None, Delta(None, old))) == []
    assert list(handlers.own_key(None, Delta(None, old))) == [objects.ref_of(old)]


def test_an_unknown_kind_fails_when_declared() -> None:
    with pytest.raises(errors.Invalid, match="unknown kind 'Contianer'"):
        handlers.Watch("Contianer", handlers.own_key)
    with pytest.raises(ImportError, match="CONTIANER"):
        exec("from dora.api.kinds import CONTIANER")


def test_an_index_name_taken_by_another_function_is_an_error() -> None:
    store = Store(kinds.CONTAINER, indexers={"node": by_node})
    store.add_index("node", by_node)  # the same: nothing
    with pytest.raises(IndexClash, match=r"index 'node' is already .*by_node"):
        store.add_index("node", lambda o: [o.metadata.workspace])


class _Noop:
    name = "noop"

    async def reconcile(self, *, key: Ref) -> Result:
        return DONE


def _spec(name: str, *options: Option) -> ControllerSpec[_Noop]:
    return ControllerSpec(name=name, help="nothing", build=lambda setup: _Noop(),
                          watches=[handlers.Watch(kinds.NODE, handlers.own_key)],
                          options=options)


def test_the_registry_orders_checks_and_refuses_clashes() -> None:
    registry = Registry()
    ttl = Option("ttl", 60.0, "seconds", check=at_least(1, "--ttl"))
    registry.add(_spec("b", ttl))
    registry.add(ControllerSpec(name="a", help="first", build=lambda setup: _Noop(),
                                watches=[], order=1, default=False))
    assert registry.names() == ("a", "b")
    assert registry.defaults() == ("b",)
    assert registry.option_defaults() == {"ttl": 60.0}
    with pytest.raises(ValueError, match="--ttl must be at least 1"):
        registry.check({"ttl": 0.5})
    with pytest.raises(ValueError, match="already registered"):
        registry.add(_spec("b"))
    with pytest.raises(ValueError, match="--ttl is already declared otherwise"):
        registry.add(_spec("c", Option("ttl", 5.0, "other")))
    with pytest.raises(ValueError, match="unknown controller 'z'"):
        registry.get("z")


def test_setup_names_a_missing_option() -> None:
    client = FakeClient()
    setup = Setup(client=client, cache=None, clock=client.clock, zone="z",  # type: ignore[arg-type]
                  recorder=None, options={})  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no option 'ttl'"):
        setup.option("ttl")


async def test_the_status_writer_skips_unchanged_and_retries_on_a_fresh_read() -> None:
    client = FakeClient()
    node = objects.new(kinds.NODE, "n1", zone="z")
    stored = client.put(node)

    def ready(o: object_pb2.Object) -> None:
        o.node.status.phase = "Ready"

    written = await write_status(client, stored, ready)
    assert written is not None and written.node.status.phase == "Ready"
    assert await write_status(client, written, ready) is written  # nothing to write
    assert [verb for verb, _ in client.writes] == ["update_status"]

    # A stale copy: the write conflicts, then is made on the fresh object.
    fresh = client.put(_with_capacity(written), unseen=True)
    again = await write_status(client, stored, lambda o: setattr(o.node.status, "phase",
                                                                   "NotReady"))
    assert again is not None and again.node.status.phase == "NotReady"
    assert again.node.status.gpus == fresh.node.status.gpus

    client.fail("update_status", errors.Conflict("x"), times=2)
    with pytest.raises(errors.Conflict):
        await write_status(client, again, ready, attempts=2)
    await client.delete(kinds.NODE, "n1", zone="z")
    assert await write_status(client, again, ready) is None


def _with_capacity(node: object_pb2.Object) -> object_pb2.Object:
    changed = object_pb2.Object()
    changed.CopyFrom(node)
    changed.node.status.gpus.add(index=0, product_name="Tesla")
    return changed


async def test_an_informer_runs_on_the_fake_client() -> None:
    client = FakeClient()
    client.put(objects.new(kinds.NODE, "n1", zone="z"))
    store = Store(kinds.NODE)
    seen: list[EventType] = []
    informer = Informer(client=client, store=store, clock=FakeClock(), zone="z", resync=0)
    informer.add_handler(lambda delta: seen.append(delta.type))
    async with anyio.create_task_group() as group:
        group.start_soon(informer.run)
        await informer.synced.wait()
        client.put(objects.new(kinds.NODE, "n2", zone="z"))
        await client.delete(kinds.NODE, "n1", zone="z")
        await anyio.wait_all_tasks_blocked()  # the informer has taken every event
        group.cancel_scope.cancel()
    assert seen == [EventType.ADDED, EventType.ADDED, EventType.DELETED]
    assert [o.metadata.name for o in store] == ["n2"]


def test_a_spec_is_checked_when_declared() -> None:
    with pytest.raises(errors.Invalid, match="unknown kind 'Nod'"):
        ControllerSpec(name="x", help="", build=lambda setup: _Noop(), watches=[],
                       reads=["Nod"])
    with pytest.raises(ValueError, match="workers names no option 'many'"):
        ControllerSpec(name="x", help="", build=lambda setup: _Noop(), watches=[],
                       workers="many")
