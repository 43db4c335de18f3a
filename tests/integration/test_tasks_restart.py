"""A task survives its apiserver: killed and started again mid-task (every
connection of the agent, the controllers and the test drops), the task completes and
every job ran exactly once.

Real etcd, the real apiserver in-process, the controllers, an agent on the real
dockerd; seed 003's job script counts its runs in each job's output folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from dora.api import errors, tasks
from dora.apiserver.server import APIServer, Config
from tests import eventually as shared
from tests.integration.controllers_harness import TaskGroup, eventually, group
from tests.integration.test_tasks import (
    Cluster,
    apiserver_config,
    cluster,
    controllers,
    get_task,
    job_containers,
    node,
    runs,
    task,
)

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["apiserver_config", "cluster", "group", "node"]

JOBS = 8


@pytest.fixture
def agent_options() -> dict[str, Any]:
    """The agent's lease outlives the outage, as production's 15 s outlives a restart
    (with the tests' 2 s it would fence its jobs, rightly)."""
    return {"lease_ttl": 15}


async def test_an_apiserver_restart_mid_task_runs_every_job_exactly_once(
        cluster: Cluster, group: TaskGroup, apiserver_config: Config) -> None:
    cluster.tutorial(JOBS, sleep=1)
    port = cluster.apiserver.port
    restarted: APIServer | None = None
    try:
        async with controllers(cluster, group):
            await cluster.client.apply(task(parallelism=3, test_jobs=0))

            async def some_done() -> bool:
                status = (await get_task(cluster.client)).task.status
                return status.completed >= 2 and status.running >= 1

            await eventually(some_done, within=60, what="two jobs done and more running")
            await cluster.apiserver.stop(grace=0)
            # Down for a while (time that passes, not a wait for something): running
            # jobs end meanwhile and nobody can record it.
            await asyncio.sleep(2)
            restarted = APIServer(dataclasses.replace(apiserver_config,
                                                      listen=f"127.0.0.1:{port}"))
            await restarted.start()

            async def completed() -> Any:
                got = await get_task(cluster.client)
                return got if got.task.status.state == tasks.COMPLETED else None

            # The test's own client reconnects too: refused meanwhile is not yet.
            done = await shared.eventually(completed, within=90, what="the task Completed",
                                           ignore=(errors.Unavailable,))
            records = await job_containers(cluster.client)
    finally:
        if restarted is not None:
            await restarted.stop(grace=0)
    status = done.task.status
    assert (status.total, status.completed, status.failed) == (JOBS, JOBS, 0)
    assert status.jobs == "C" * JOBS and list(status.attempts) == [1] * JOBS
    # One container per job, and each job's script ran once.
    assert sorted(c.metadata.name for c in records) == sorted(
        f"tutorial.j{i}-0" for i in range(JOBS))
    assert {c.container.status.phase for c in records} == {"Exited"}
    assert runs(cluster) == {f"config_{i:02d}": 1 for i in range(JOBS)}
