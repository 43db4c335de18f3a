"""The Docker driver against the real engine, with every blocking call on the event
loop failing the test (blockbuster): docker-py must run in the driver's threads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from blockbuster import BlockingError, blockbuster_ctx

from dora.agent import dockerspec
from dora.agent.docker_driver import DockerDriver, EngineUnavailable, ImageNotFound
from dora.agent.dockerspec import RunSpec
from dora.api.objects import Ref
from tests.integration import agent_harness as h


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


@pytest.fixture
async def driver() -> AsyncIterator[DockerDriver]:
    engine = DockerDriver()
    yield engine
    await engine.close()


def spec_for(node: str, name: str, **options: Any) -> RunSpec:
    uid = str(uuid.uuid4())
    labels = {dockerspec.LABEL_NODE: node, dockerspec.LABEL_UID: uid,
              dockerspec.LABEL_ZONE: "z", dockerspec.LABEL_WORKSPACE: "w",
              dockerspec.LABEL_CONTAINER: name}
    return RunSpec(name=f"dora-test-{node}-{name}-{uid[:8]}", image=h.BUSYBOX, labels=labels,
                   **options)


async def test_the_driver_runs_docker_off_the_event_loop(
    driver: DockerDriver, node: str
) -> None:
    spec = spec_for(node, "a", command=["/bin/sh", "-c", "exit 7"])
    with blockbuster_ctx("dora"):
        assert await driver.version()
        assert await driver.image_present(h.BUSYBOX)
        assert not await driver.image_present("dora/absent:never")
        docker_id = await driver.create(spec)
        assert await driver.create(spec) == docker_id, "a repeated create finds the first"
        await driver.start(docker_id)
        observed = await driver.inspect(docker_id)
        [summary] = await driver.list(node=node, key=Ref("Container", "z", "w", "a"))
        assert await driver.list(node=node, key=Ref("Container", "z", "w", "b")) == []
        await driver.remove(docker_id, stop_timeout=1)
        await driver.remove(docker_id, stop_timeout=1)  # gone is fine
        assert await driver.inspect(docker_id) is None
    assert observed is not None and observed.labels == spec.labels
    assert summary.id == docker_id and summary.uid == spec.labels[dockerspec.LABEL_UID]


async def test_blockbuster_would_catch_docker_py_on_the_event_loop(
    driver: DockerDriver,
) -> None:
    """The control for the test above: the same docker-py code, called on the loop."""
    with blockbuster_ctx("dora"), pytest.raises(BlockingError):
        driver._connect(timeout=5)


async def test_a_missing_image_is_image_not_found(driver: DockerDriver, node: str) -> None:
    spec = spec_for(node, "a")
    with pytest.raises(ImageNotFound):
        await driver.create(RunSpec(**{**spec.__dict__, "image": "dora/absent:never"}))


async def test_no_engine_is_engine_unavailable(tmp_path: Any) -> None:
    engine = DockerDriver(host=f"unix://{tmp_path}/no.sock")
    try:
        with pytest.raises(EngineUnavailable, match="cannot reach the Docker engine"):
            await engine.list(node="n")
    finally:
        await engine.close()


@pytest.mark.parametrize("memory", [0, 64 * 1024 * 1024])
async def test_the_memory_limit_reaches_docker(driver: DockerDriver, node: str,
                                               docker: Any, memory: int) -> None:
    spec = spec_for(node, "m", command=["/bin/sh", "-c", "exit 0"], mem_limit=memory)
    docker_id = await driver.create(spec)
    try:
        host_config = docker.api.inspect_container(docker_id)["HostConfig"]
        assert host_config["Memory"] == memory
    finally:
        await driver.remove(docker_id, stop_timeout=1)
