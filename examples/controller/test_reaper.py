"""The Reaper's unit test: the fake client and a fake clock, no cluster."""

from __future__ import annotations

import datetime as dt

from reaper import CONTROLLER, LABEL, Reaper

from dora.api import kinds, objects
from dora.runtime.testing import Harness


def container(name: str, *, labelled: bool = True, exited_ago: float | None = None,
              harness: Harness[Reaper]) -> None:
    obj = objects.new(kinds.CONTAINER, name, zone="z", workspace="w")
    if labelled:
        obj.metadata.labels[LABEL] = ""
    if exited_ago is not None:
        obj.container.status.phase = "Exited"
        finished = harness.clock.wall() - dt.timedelta(seconds=exited_ago)
        obj.container.status.finished_at.FromDatetime(finished)
    harness.client.put(obj)


async def test_reaps_labelled_containers_once_exited_for_the_ttl() -> None:
    harness = Harness(CONTROLLER, options={"reaper_ttl": 60.0})
    container("old", exited_ago=120, harness=harness)
    container("recent", exited_ago=10, harness=harness)
    container("running", harness=harness)
    container("unlabelled", labelled=False, exited_ago=120, harness=harness)
    await harness.settle()
    assert harness.client.names(kinds.CONTAINER) == ["recent", "running", "unlabelled"]

    await harness.advance(49)
    assert "recent" in harness.client.names(kinds.CONTAINER)
    await harness.advance(1)  # exited 60 s ago now
    assert harness.client.names(kinds.CONTAINER) == ["running", "unlabelled"]
