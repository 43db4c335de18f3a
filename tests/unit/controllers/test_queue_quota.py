"""Quota arithmetic (properties), the Quota YAML as the README writes it, and the gate."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from dora.api import codec, objects
from dora.apiserver.admission import validation
from dora.controllers.queue import gate as gate_module
from dora.controllers.queue.quota import Cap, Tally, Use, refusal
from dora.controllers.scheduler.filters import GPU
from dora.controllers.scheduler.snapshot import Placement
from dora.ctl import columns
from dora.runtime.cache import Cache, Delta, Store, clone
from tests.unit.controllers.helpers import obj

PRODUCTS = ("A100", "V100", "Quadro")
WORKSPACES = ("lab", "vision", "alice")

caps_strategy = st.lists(st.builds(
    Cap,
    name=st.sampled_from(["q1", "q2", "q3", "q4"]),
    workspaces=st.one_of(st.none(), st.frozensets(st.sampled_from(WORKSPACES), min_size=1)),
    gpus=st.lists(st.tuples(st.frozensets(st.sampled_from((*PRODUCTS, "All")), max_size=2),
                            st.integers(0, 6)), max_size=2).map(tuple),
    millicores=st.one_of(st.none(), st.integers(0, 8000)),
    containers=st.one_of(st.none(), st.integers(0, 6)),
), max_size=4)
uses_strategy = st.lists(st.builds(
    Use,
    workspace=st.sampled_from(WORKSPACES),
    gpus=st.integers(0, 3),
    gpu_product=st.sampled_from(PRODUCTS),
    millicores=st.sampled_from([0, 500, 1000, 2000]),
), max_size=40)


def within(cap: Cap, placed: list[Use]) -> bool:
    """Every bound of ``cap`` holds for ``placed``, counted the plain way."""
    mine = [u for u in placed if cap.covers(u.workspace)]
    for products, count in cap.gpus:
        every = not products or "All" in products
        if sum(u.gpus for u in mine if every or u.gpu_product in products) > count:
            return False
    if cap.millicores is not None and sum(u.millicores for u in mine) > cap.millicores:
        return False
    return cap.containers is None or len(mine) <= cap.containers


@settings(max_examples=300, deadline=None)
@given(caps=caps_strategy, uses=uses_strategy)
def test_admitting_what_the_caps_allow_never_exceeds_one_and_refuses_only_when_one_would(
        caps: list[Cap], uses: list[Use]) -> None:
    tally, placed = Tally(), []
    for use in uses:
        why = refusal(caps, tally, use)
        fits_all = all(within(cap, [*placed, use]) for cap in caps)
        if why is None:
            tally.add(use)
            placed.append(use)
        assert (why is None) == fits_all, why  # refused exactly when it would break one
        assert all(within(cap, placed) for cap in caps)


@given(uses=uses_strategy)
def test_removing_what_was_added_leaves_the_tally_as_it_was(uses: list[Use]) -> None:
    cap = Cap("all", gpus=((frozenset(), 10**6),), millicores=10**9, containers=10**6)
    tally = Tally(uses)
    before = (tally.gpus(cap, frozenset()), tally.millicores(cap), tally.containers(cap))
    for use in uses:
        tally.add(use)
    for use in uses:
        tally.remove(use)
    assert (tally.gpus(cap, frozenset()), tally.millicores(cap),
            tally.containers(cap)) == before
    assert before == (sum(u.gpus for u in uses), sum(u.millicores for u in uses), len(uses))


def test_the_message_names_the_quota_and_the_numbers() -> None:
    cap = Cap("lab", workspaces=frozenset({"lab"}), gpus=((frozenset({"V100"}), 2),),
              millicores=4000, containers=3)
    tally = Tally([Use("lab", 2, "V100"), Use("lab", millicores=3000)])
    assert refusal([cap], tally, Use("lab", 1, "V100")) == (
        "quota lab: 2 of 2 GPUs of [V100] in use, this container needs 1")
    assert refusal([cap], tally, Use("lab", 1, "A100")) is None, "another product"
    assert refusal([cap], tally, Use("lab", millicores=2000)) == (
        "quota lab: 3000m of 4000m CPU in use, this container needs 2000m")
    tally.add(Use("lab"))
    assert refusal([cap], tally, Use("lab")) == "quota lab: 3 of 3 containers placed"
    assert refusal([cap], tally, Use("vision", 5, "V100")) is None, "not covered"


README_YAML = """\
apiVersion: v1
kind: Quota
metadata:
  name: lab
  zone: dc-rov-01
spec:
  workspace: lab
  gpu:
    - product_name: All
      count: 4
    - product_name: [Tesla V100-SXM2-16GB, Quadro RTX 6000]
      count: 2
  cpu:
    millicores: 32000
  containers: 50
"""


def test_the_readme_quota_decodes_validates_and_prints() -> None:
    [quota] = codec.decode_yaml(README_YAML)
    validation.validate(quota)
    spec = quota.quota.spec
    assert [list(g.product_name) for g in spec.gpu] == [
        ["All"], ["Tesla V100-SXM2-16GB", "Quadro RTX 6000"]]
    assert (spec.cpu.millicores, spec.containers) == (32000, 50)
    row = {c.header: c.cell(quota, dt.datetime.now(dt.UTC))
           for c in columns.columns("Quota")}
    assert (row["SCOPE"], row["GPU"], row["CPU"], row["CONTAINERS"]) == (
        "workspace lab", "4, 2 [Tesla V100-SXM2-16GB|Quadro RTX 6000]", "32000m", "50")
    cap = gate_module.cap_of(quota, users={})
    assert cap.workspaces == frozenset({"lab"})


def test_the_gate_counts_placed_and_assumed_containers_not_the_one_asking() -> None:
    cache = Cache()
    for kind in ("Quota", "User", "Container"):
        cache.add(Store(kind))
    user = objects.new("User", "alice")
    user.user.spec.defaults.workspace = "shared"
    cache.store("User").upsert(user)
    quota = obj("Quota", "alice")
    quota.quota.spec.user = "alice"
    quota.quota.spec.gpu.add(product_name=["All"], count=2)
    gate = gate_module.QuotaGate(cache=cache)
    asking = obj("Container", "c3", workspace="shared")
    key = objects.ref_of(asking)
    one = [GPU(0, "g0", "A100")]
    assert gate.refusal(key=key, container=asking, gpus=one, millicores=0, assumed={}) is None
    cache.store("Quota").upsert(quota)
    placed = obj("Container", "c1", workspace="alice", node="n1")
    placed.container.spec.gpus.add(index=0, uuid="g0", product_name="A100")
    placed.container.status.phase = "Running"
    gate.on_container(Delta(None, placed))
    assert gate.refusal(key=key, container=asking, gpus=one, millicores=0, assumed={}) is None
    assumed = {objects.ref_of(obj("Container", "c2", workspace="shared")):
               Placement(node="n1", gpus=(GPU(1, "g1", "A100"),), cpu_millicores=0,
                         workload="shared/w")}
    assert gate.refusal(key=key, container=asking, gpus=one, millicores=0,
                        assumed=assumed) == (
        "quota alice: 2 of 2 GPUs in use, this container needs 1")
    assumed[key] = Placement(node="n1", gpus=tuple(one), cpu_millicores=0, workload="shared/w")
    del assumed[next(k for k in assumed if k != key)]
    assert gate.refusal(key=key, container=asking, gpus=one, millicores=0,
                        assumed=assumed) is None, "its own choice is not counted twice"
    gate.on_container(Delta(placed, placed))  # a resync: counted once still
    assert gate.refusal(key=key, container=asking, gpus=one, millicores=0,
                        assumed={}) is None
    assert gate.tally.gpus(gate_module.cap_of(quota, users={}), frozenset()) == 1
    done = clone(placed)
    done.container.status.phase = "Exited"
    gate.on_container(Delta(placed, done))
    assert gate.placed == {}
    gate.on_container(Delta(done, None))
    assert gate.placed == {}
