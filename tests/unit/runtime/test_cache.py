"""The cache: stores with indexes, kept current by versions."""

from __future__ import annotations

from dora.api.objects import Ref
from dora.api.v1.object_pb2 import Object
from dora.runtime.cache import Store, by_controller_owner, by_node
from tests.unit.controllers.helpers import obj


def unbound(obj: Object) -> list[str]:
    """Files every Container waiting for a node under ``""``."""
    if obj.container.spec.node_name or obj.metadata.HasField("deletion_timestamp"):
        return []
    return [""]


def store() -> Store:
    return Store("Container", indexers={"owner": by_controller_owner, "node": by_node,
                                        "unbound": unbound})


def test_indexes_follow_updates_and_removals() -> None:
    s = store()
    s.upsert(obj("Container", "a.0", owner="a", node="n1"))
    s.upsert(obj("Container", "a.1", owner="a"))
    s.upsert(obj("Container", "b.0", owner="b", node="n1"))
    assert [o.metadata.name for o in s.by_index("owner", "uid-a")] == ["a.0", "a.1"]
    assert [o.metadata.name for o in s.by_index("node", "n1")] == ["a.0", "b.0"]
    assert [o.metadata.name for o in s.by_index("unbound", "")] == ["a.1"]

    s.upsert(obj("Container", "a.1", owner="a", node="n2", rv=2))
    assert s.by_index("unbound", "") == []
    assert [o.metadata.name for o in s.by_index("node", "n2")] == ["a.1"]
    s.remove(obj("Container", "a.0"))
    assert [o.metadata.name for o in s.by_index("node", "n1")] == ["b.0"]
    assert s.index_values("node") == ["n1", "n2"]


def test_an_older_version_never_replaces_a_newer_one() -> None:
    s = store()
    assert s.upsert(obj("Container", "a.0", rv=5)) is not None
    assert s.upsert(obj("Container", "a.0", rv=4)) is None
    assert s.upsert(obj("Container", "a.0", rv=5)) is None
    found = s.get(Ref("Container", "z", "w", "a.0"))
    assert found is not None and found.metadata.resource_version == 5


def test_replace_reports_what_changed() -> None:
    s = store()
    s.upsert(obj("Container", "kept", rv=1))
    s.upsert(obj("Container", "changed", rv=1))
    s.upsert(obj("Container", "gone", rv=1))
    deltas = s.replace([obj("Container", "kept", rv=1), obj("Container", "changed", rv=3),
                        obj("Container", "new", rv=4)])
    summary = sorted((d.object.metadata.name, d.old is None, d.new is None) for d in deltas)
    assert summary == [("changed", False, False), ("gone", False, True), ("new", True, False)]
    assert sorted(o.metadata.name for o in s) == ["changed", "kept", "new"]


def test_an_index_added_later_covers_what_is_stored() -> None:
    s = Store("Container")
    s.upsert(obj("Container", "a.0", node="n1"))
    s.add_index("node", by_node)
    assert [o.metadata.name for o in s.by_index("node", "n1")] == ["a.0"]


def test_by_index_keeps_its_order_and_shows_the_newest_versions() -> None:
    """``by_index`` remembers each value's sorted refs between calls: an object's new
    version shows at once, one filed elsewhere leaves the old value, and a new one
    takes its place in the order."""
    s = store()
    for name in ("c.0", "a.0", "b.0"):
        s.upsert(obj("Container", name, node="n1"))
    assert [o.metadata.name for o in s.by_index("node", "n1")] == ["a.0", "b.0", "c.0"]
    s.upsert(obj("Container", "b.0", node="n1", rv=2))  # same node: still filed there
    [_, b, _] = s.by_index("node", "n1")
    assert b.metadata.resource_version == 2
    s.upsert(obj("Container", "a.0", node="n2", rv=2))
    s.upsert(obj("Container", "a.1", node="n1"))
    assert [o.metadata.name for o in s.by_index("node", "n1")] == ["a.1", "b.0", "c.0"]
    assert [o.metadata.name for o in s.by_index("node", "n2")] == ["a.0"]
    s.remove(obj("Container", "c.0"))
    assert [o.metadata.name for o in s.by_index("node", "n1")] == ["a.1", "b.0"]
