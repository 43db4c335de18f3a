"""The workload controller against a full workspace: the apiserver's object quota
stops its creates (a QuotaExceeded event says why), and scaling down still works."""

from __future__ import annotations

import pytest

from dora.api import conventions
from dora.api.client import Client
from dora.apiserver.admission import Limits
from dora.apiserver.server import Config
from dora.apiserver.storage import Etcd
from tests.integration.controllers_harness import (
    Controllers,
    TaskGroup,
    containers,
    eventually,
    group,
    workload,
)
from tests.integration.etcd import EtcdProcess
from tests.integration.test_controllers_workload import change

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

QUOTA = 6


@pytest.fixture
def apiserver_config(etcd: Etcd, etcd_process: EtcdProcess) -> Config:
    return Config(
        etcd_endpoints=[etcd_process.endpoint], listen="127.0.0.1:0",
        bookmark_every=0.5, progress_every=0.2,
        bounds=Limits(max_objects_per_workspace=QUOTA),
    )


@pytest.mark.parametrize("batch", [2, 50])
async def test_the_quota_stops_a_workloads_creates_and_scaling_down_still_works(
        client: Client, group: TaskGroup, batch: int) -> None:
    Controllers(client, create_batch=batch).start(group)
    await client.apply(workload("many", replicas=20))

    async def quota_event() -> bool:
        events, _ = await client.list(
            "Event", label_selector=f"{conventions.WORKLOAD_LABEL}=many")
        return any(e.event.spec.reason == "QuotaExceeded"
                   and "--max-objects-per-workspace" in e.event.spec.message
                   for e in events)

    await eventually(quota_event, what="a QuotaExceeded event")
    # The Workload and QUOTA - 1 Containers fill the workspace; none beyond.
    assert len(await containers(client, "many", live=False)) == QUOTA - 1
    await change(client, "many", lambda s: setattr(s.replica, "count", 1))

    async def one_left() -> bool:
        return len(await containers(client, "many", live=False)) == 1

    await eventually(one_left, what="scaled down to 1")
