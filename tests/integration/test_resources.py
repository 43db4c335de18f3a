"""Apply, Get, List, UpdateStatus and Delete through real gRPC on a real etcd."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dora.api import codec, errors, objects
from dora.api.client import ApplyResult, Client
from dora.api.v1 import object_pb2
from dora.apiserver.storage import Etcd

SEEDS = Path(__file__).parent.parent / "data" / "seeds"

WORKLOAD = """
apiVersion: v1
kind: Workload
metadata:
  name: blue.red
spec:
  driver: Docker
  selectors:
    cpu:
      product_name: All
      count: 1
  image:
    image: ubuntu
  config:
    cmd: /bin/bash
"""


def one(text: str) -> object_pb2.Object:
    [obj] = codec.decode_yaml(text)
    return obj


def seed_objects() -> list[object_pb2.Object]:
    found = []
    for path in sorted(SEEDS.glob("*.yaml")):
        if "tabs" in path.name:
            continue
        found.extend(codec.decode_yaml(path.read_text(), source=path.name))
    return found


async def apply_scopes(client: Client, objs: list[object_pb2.Object]) -> None:
    """Create every zone and workspace the objects live in (seeds use several)."""
    for obj in objs:
        if obj.metadata.zone:
            await client.apply(objects.new("Zone", obj.metadata.zone))
        if obj.metadata.workspace:
            await client.apply(objects.new("Workspace", obj.metadata.workspace))


@pytest.mark.usefixtures("default_scope")
async def test_every_seed_object_round_trips_through_apply_and_get(client: Client) -> None:
    seeds = seed_objects()
    assert len({o.kind for o in seeds}) >= 9
    await apply_scopes(client, seeds)
    for seed in seeds:
        stored, _ = await client.apply(seed)
        got = await client.get(seed.kind, seed.metadata.name, zone=stored.metadata.zone,
                               workspace=stored.metadata.workspace)
        assert got == stored
        assert got.metadata.uid and got.metadata.generation >= 1
        sent = codec.to_dict(seed)
        back = codec.to_dict(got)
        # Everything the seed said is still there, with the same value.
        for path in codec.iter_field_paths(sent.get("spec", {}), "spec"):
            assert _lookup(back, path) == _lookup(sent, path), (seed.kind, path)


def _lookup(data: object, path: str) -> object:
    for part in path.replace("[", ".[").split("."):
        index: int | str = int(part[1:-1]) if part.startswith("[") else part
        data = data[index]  # type: ignore[index]
    return data


@pytest.mark.usefixtures("default_scope")
async def test_apply_creates_configures_and_leaves_unchanged(client: Client) -> None:
    created, result = await client.apply(one(WORKLOAD))
    assert result == ApplyResult.CREATED
    assert created.metadata.zone == "default" and created.metadata.workspace == "default"
    assert created.workload.spec.replica.count == 1
    assert created.workload.spec.config.restart_policy == "Never"
    assert created.workload.spec.image.pull_policy == "IfNotPresent"
    assert created.metadata.generation == 1

    same, result = await client.apply(one(WORKLOAD))
    assert result == ApplyResult.UNCHANGED
    assert same.metadata.resource_version == created.metadata.resource_version

    relabelled = one(WORKLOAD)
    relabelled.metadata.labels["team"] = "vision"
    labelled, result = await client.apply(relabelled)
    assert result == ApplyResult.CONFIGURED
    assert labelled.metadata.generation == 1, "labels are not spec"

    changed = one(WORKLOAD.replace("image: ubuntu", "image: python"))
    updated, result = await client.apply(changed)
    assert result == ApplyResult.CONFIGURED
    assert updated.metadata.generation == 2
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.labels == {}, "apply replaces labels with what it is given"


@pytest.mark.usefixtures("default_scope")
async def test_dry_run_writes_nothing(client: Client) -> None:
    obj, result = await client.apply(one(WORKLOAD), dry_run=True)
    assert result == ApplyResult.CREATED and obj.workload.spec.replica.count == 1
    with pytest.raises(errors.NotFound):
        await client.get("Workload", "blue.red")


@pytest.mark.usefixtures("default_scope")
async def test_concurrent_updates_with_one_version_one_wins(client: Client) -> None:
    created, _ = await client.apply(one(WORKLOAD))
    attempts = []
    for image in ("python", "debian"):
        update = one(WORKLOAD.replace("image: ubuntu", f"image: {image}"))
        update.metadata.resource_version = created.metadata.resource_version
        attempts.append(client.apply(update))
    results = await asyncio.gather(*attempts, return_exceptions=True)
    conflicts = [r for r in results if isinstance(r, errors.Conflict)]
    wins = [r for r in results if isinstance(r, tuple)]
    assert len(conflicts) == 1 and len(wins) == 1, results
    stored = await client.get("Workload", "blue.red")
    assert stored.workload.spec.image.image == wins[0][0].workload.spec.image.image


@pytest.mark.usefixtures("default_scope")
async def test_update_status_keeps_spec_and_generation(client: Client) -> None:
    created, _ = await client.apply(one(WORKLOAD))
    report = objects.new("Workload", "blue.red")
    report.workload.status.ready_replicas = 1
    report.workload.status.observed_generation = 1
    updated = await client.update_status(report)
    assert updated.workload.status.ready_replicas == 1
    assert updated.workload.spec == created.workload.spec
    assert updated.metadata.generation == 1
    # Apply leaves the status alone.
    again, _ = await client.apply(one(WORKLOAD.replace("ubuntu", "python")))
    assert again.workload.status.ready_replicas == 1
    stale = objects.new("Workload", "blue.red")
    stale.metadata.resource_version = created.metadata.resource_version
    with pytest.raises(errors.Conflict):
        await client.update_status(stale)
    zone = objects.new("Zone", "default")
    with pytest.raises(errors.Invalid, match="no status"):
        await client.update_status(zone)


@pytest.mark.usefixtures("default_scope")
async def test_list_filters_by_scope_and_labels_and_paginates(client: Client) -> None:
    await client.apply(objects.new("Workspace", "team-a"))
    for index in range(25):
        obj = one(WORKLOAD)
        obj.metadata.name = f"w{index:02d}"
        obj.metadata.workspace = "team-a" if index % 2 else "default"
        obj.metadata.labels["parity"] = "odd" if index % 2 else "even"
        await client.apply(obj)
    everything, _ = await client.list("Workload")
    assert len(everything) == 25
    team_a, _ = await client.list("Workload", zone="default", workspace="team-a")
    assert {o.metadata.name for o in team_a} == {f"w{i:02d}" for i in range(1, 25, 2)}
    across_zones, _ = await client.list("Workload", workspace="team-a")
    assert len(across_zones) == 12
    even, _ = await client.list("Workload", label_selector="parity=even")
    assert len(even) == 13
    assert len((await client.list("Workload", label_selector="parity in (odd),!x"))[0]) == 12

    first = await client.list_page("Workload", limit=10)
    assert len(first.items) == 10 and first.continue_token
    # Pages are one snapshot: a write between pages does not show up.
    late = one(WORKLOAD)
    late.metadata.name = "w99"
    await client.apply(late)
    names = [o.metadata.name for o in first.items]
    token = first.continue_token
    while token:
        page = await client.list_page("Workload", limit=10, continue_token=token)
        assert page.resource_version == first.resource_version
        names += [o.metadata.name for o in page.items]
        token = page.continue_token
    assert sorted(names) == [f"w{i:02d}" for i in range(25)], "each once, none added"
    with pytest.raises(errors.Invalid, match="continue"):
        await client.list_page("Workload", continue_token="garbage")


@pytest.mark.usefixtures("default_scope")
async def test_paginated_list_at_a_compacted_revision_is_gone(client: Client, etcd: Etcd) -> None:
    for index in range(4):
        obj = one(WORKLOAD)
        obj.metadata.name = f"w{index}"
        await client.apply(obj)
    first = await client.list_page("Workload", limit=2)
    obj = one(WORKLOAD)
    obj.metadata.name = "later"
    await client.apply(obj)
    await etcd.compact(await etcd.revision())
    with pytest.raises(errors.Gone):
        await client.list_page("Workload", limit=2, continue_token=first.continue_token)


@pytest.mark.usefixtures("default_scope")
async def test_delete_with_finalizers_waits_for_the_last_one(client: Client) -> None:
    created, _ = await client.apply(one(WORKLOAD))
    held = object_pb2.Object()
    held.CopyFrom(created)
    held.metadata.finalizers.append("dora.io/volume-in-use")
    held, _ = await client.apply(held)
    marked = await client.delete("Workload", "blue.red")
    assert marked.metadata.HasField("deletion_timestamp")
    still = await client.get("Workload", "blue.red")
    assert still.metadata.finalizers == ["dora.io/volume-in-use"]
    with pytest.raises(errors.Conflict, match="being deleted"):
        await client.apply(one(WORKLOAD))
    del still.metadata.finalizers[:]
    await client.apply(still)
    with pytest.raises(errors.NotFound):
        await client.get("Workload", "blue.red")


@pytest.mark.usefixtures("default_scope")
async def test_delete_with_a_stale_version_is_a_conflict(client: Client) -> None:
    created, _ = await client.apply(one(WORKLOAD))
    await client.apply(one(WORKLOAD.replace("ubuntu", "python")))
    with pytest.raises(errors.Conflict):
        await client.delete("Workload", "blue.red",
                            resource_version=created.metadata.resource_version)
    with pytest.raises(errors.NotFound):
        await client.delete("Workload", "nothing-here")


@pytest.mark.usefixtures("default_scope")
@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: setattr(o, "kind", "Pod"), "kind"),
        (lambda o: setattr(o.metadata, "name", ""), "metadata.name"),
        (lambda o: setattr(o.metadata, "name", "bad/name"), "metadata.name"),
        (lambda o: setattr(o.workload.spec.selectors.cpu, "count", -1),
         "spec.selectors.cpu.count"),
        (lambda o: setattr(o.workload.spec.config, "restart_policy", "Sometimes"),
         "spec.config.restartPolicy"),
        # Over admission's 1 MiB object bound, under the 1.5 MiB Apply message limit
        # (a larger message is RESOURCE_EXHAUSTED: tests/integration/test_request_gate.py).
        (lambda o: o.metadata.annotations.__setitem__("blob", "x" * (1200 * 1024)),
         "metadata"),
    ],
)
async def test_bad_input_is_rejected_and_nothing_is_written(
    client: Client, etcd: Etcd, mutate: object, field: str
) -> None:
    before = await etcd.revision()
    obj = one(WORKLOAD)
    mutate(obj)  # type: ignore[operator]
    with pytest.raises(errors.Invalid) as caught:
        await client.apply(obj)
    assert any(v.field == field for v in caught.value.violations), caught.value.violations
    assert await etcd.revision() == before


async def test_a_missing_zone_is_named_and_nothing_is_written(client: Client, etcd: Etcd) -> None:
    before = await etcd.revision()
    obj = one(WORKLOAD)
    obj.metadata.zone = "dc-typo-01"
    with pytest.raises(errors.NotFound, match="dc-typo-01") as caught:
        await client.apply(obj)
    assert caught.value.violations[0].field == "metadata.zone"
    assert await etcd.revision() == before


def test_unknown_fields_and_wrong_types_never_reach_the_server() -> None:
    with pytest.raises(errors.Invalid, match=r"spec\.config\.shmSize: expected an integer"):
        codec.decode_yaml(WORKLOAD + "    shmSize: lots\n")
    with pytest.raises(errors.Invalid, match=r"spec\.imagee: unknown field"):
        codec.decode_yaml(WORKLOAD.replace("  image:\n", "  imagee:\n"))
