"""The turns kept incrementally (classes by shape, accounts, use) answer as a recount would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dora.api import objects
from dora.api.v1 import object_pb2
from dora.controllers.queue import gate as gate_module
from dora.controllers.queue.turn import DEFAULT_WORKSPACE_INDEX, Turns, by_default_workspace
from dora.controllers.scheduler.filters import GPU
from dora.runtime.cache import Cache, Delta, Store, clone
from tests.unit.controllers.helpers import obj

WORKSPACES = ("alice", "bob", "shared")


def zone() -> tuple[Cache, Turns]:
    cache = Cache()
    for kind in ("Quota", "Node", "Container"):
        cache.add(Store(kind))
    cache.add(Store("User", indexers={DEFAULT_WORKSPACE_INDEX: by_default_workspace}))
    now = [0.0]
    turns = Turns(cache=cache, quotas=gate_module.QuotaGate(cache=cache), now=lambda: now[0])
    return cache, turns


def pending(name: str, *, workspace: str, priority: int, gpus: int,
            created: int) -> object_pb2.Object:
    made = obj("Container", name, workspace=workspace)
    made.metadata.creation_timestamp.FromSeconds(1_000 + created)
    template = made.container.spec.template
    template.priority = priority
    template.selectors.gpu.count = gpus
    template.selectors.gpu.product_name.append("All")
    template.selectors.cpu.count = 1
    return made


def brute_force(turns: Turns, key: objects.Ref, containers: list[object_pb2.Object],
                placed: set[str]) -> objects.Ref | None:
    """Who goes first, from every pending container of the same shape (the older of
    one's own class too, once the shape has two classes or more)."""
    def rank(c: object_pb2.Object) -> tuple[int, float, int]:
        return (-c.container.spec.template.priority, turns.usage(c.metadata.workspace),
                c.metadata.creation_timestamp.seconds)
    mine = next(c for c in containers if objects.ref_of(c) == key)
    shape = mine.container.spec.template.selectors.gpu.count
    others = [c for c in containers if c.metadata.name not in placed
              and objects.ref_of(c) != key
              and c.container.spec.template.selectors.gpu.count == shape]
    classes = {(c.metadata.workspace, c.container.spec.template.priority)
               for c in (*others, mine)}
    if len(classes) <= 1:
        return None  # one class of this shape: its members go in any order, none waits
    best = min(others, key=rank, default=None)
    return objects.ref_of(best) if best is not None and rank(best) < rank(mine) else None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORKSPACES), st.sampled_from([0, 10, 50]),
                          st.integers(1, 2)), min_size=1, max_size=25),
       st.sets(st.integers(0, 24)),
       st.dictionaries(st.sampled_from(["alice", "bob"]), st.floats(0, 100)))
def test_who_goes_first_is_what_a_look_at_every_pending_container_says(
        specs: list[tuple[str, int, int]], bind: set[int], usage: dict[str, float]) -> None:
    cache, turns = zone()
    containers = [pending(f"c{i:02d}", workspace=w, priority=p, gpus=g, created=i)
                  for i, (w, p, g) in enumerate(specs)]
    for container in containers:  # created oldest first, as the informer sees them
        cache.store("Container").upsert(container)
        turns.on_container(Delta(None, container))
    placed = set()
    for index in sorted(bind):
        if index < len(containers):
            before = containers[index]
            after = clone(before)
            after.container.spec.node_name = "n1"
            after.metadata.resource_version += 1
            cache.store("Container").upsert(after)
            turns.on_container(Delta(before, after))
            placed.add(before.metadata.name)
    for account, used in usage.items():
        turns.fair.seed(account, used)
    for container in containers:
        if container.metadata.name in placed:
            continue
        key = objects.ref_of(container)
        ahead = turns.ahead(key=key, container=container, gpus=(GPU(0, "g0", "A100"),),
                            millicores=1000, assumed={})
        expected = brute_force(turns, key, containers, placed)
        assert (ahead.first if ahead is not None else None) == expected


def test_an_account_and_its_use_follow_a_new_user_and_a_new_observation() -> None:
    cache, turns = zone()
    assert turns.account_of("lab") == "lab"
    turns.fair.seed("carol", 5.0)
    assert turns.usage("lab") == 0.0
    carol = objects.new("User", "carol")
    carol.metadata.resource_version = 1
    carol.user.spec.defaults.workspace = "lab"
    cache.store("User").upsert(carol)
    assert turns.account_of("lab") == "carol"
    assert turns.usage("lab") == 5.0
    turns.fair.seed("carol", 7.0)
    assert turns.usage("lab") == 7.0


def test_use_is_observed_from_the_gates_tally_and_the_nodes() -> None:
    cache, turns = zone()
    now = [0.0]
    turns.now = lambda: now[0]
    node = obj("Node", "n1")
    node.node.status.cpu.count = 4
    for index in range(4):
        node.node.status.gpus.add(index=index, uuid=f"g{index}", product_name="A100")
    cache.store("Node").upsert(node)
    running = obj("Container", "c1", workspace="alice", node="n1")
    running.container.spec.gpus.add(index=0, uuid="g0", product_name="A100")
    running.container.status.phase = "Running"
    turns.quotas.on_container(Delta(None, running))
    turns.observe()
    now[0] = 10.0
    turns.observe()
    # A quarter of the zone's GPUs for 10 s (a little less: an hour's half-life).
    assert 2.49 < turns.usage("alice") < 2.5
    assert turns.usage("bob") == 0.0
