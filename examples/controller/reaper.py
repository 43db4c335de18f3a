"""Reaper: deletes the Containers labelled ``example.com/reap`` once they have been
Exited for ``--reaper-ttl`` seconds. A complete controller, to copy.

    PYTHONPATH=examples/controller dora-controllers --load reaper \
        --controllers workload,scheduler,nodelifecycle,volume,credit,task,reaper
"""

from __future__ import annotations

import contextlib
import datetime as dt

from dora.api import errors, kinds
from dora.api.objects import Ref
from dora.runtime.handlers import Event, Watch, own_key
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import REGISTRY, ControllerSpec, Option, Setup, more_than

LABEL = "example.com/reap"


class Reaper:
    name = "reaper"

    def __init__(self, setup: Setup) -> None:
        self.client, self.cache, self.clock = setup.client, setup.cache, setup.clock
        self.ttl: float = setup.option("reaper_ttl")

    async def reconcile(self, *, key: Ref) -> Result:
        container = self.cache.store(kinds.CONTAINER).get(key)  # the cache, not the event
        if container is None or container.container.status.phase != "Exited":
            return DONE
        finished = container.container.status.finished_at.ToDatetime(tzinfo=dt.UTC)
        left = self.ttl - (self.clock.wall() - finished).total_seconds()
        if left > 0:
            return Result(requeue_after=left)  # look again when it is due
        with contextlib.suppress(errors.NotFound):  # gone already: done too
            await self.client.delete(kinds.CONTAINER, key.name, zone=key.zone,
                                     workspace=key.workspace,
                                     resource_version=container.metadata.resource_version)
        return DONE


def labelled(event: Event) -> bool:
    return LABEL in event.object.metadata.labels


CONTROLLER = REGISTRY.add(ControllerSpec[Reaper](
    name="reaper",
    help="deletes Containers labelled example.com/reap some time after they exited",
    build=Reaper,
    watches=[Watch(kinds.CONTAINER, own_key, predicate=labelled)],
    options=[Option("reaper_ttl", 3600.0, "seconds an Exited container is kept",
                    check=more_than(0, "--reaper-ttl"))],
    default=False,  # run only when named in --controllers
))
