"""Which Container events wake a task's reconcile: those that change what its step
reads (an attempt ended, is being deleted, is gone), not binding or running ones."""

from __future__ import annotations

from typing import cast

from dora.api import conventions, kinds, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers.task.reconciler import CONTROLLER, TaskController, new_container
from dora.runtime.cache import Delta, clone

TASK = Ref(kinds.TASK, "z", "ws", "sweep")


def task() -> object_pb2.Object:
    obj = objects.new(kinds.TASK, TASK.name, zone=TASK.zone, workspace=TASK.workspace)
    obj.metadata.uid = "uid-1"
    obj.task.spec.exec = "run %DATA %IN %OUT"
    return obj


def woken(old: object_pb2.Object | None, new: object_pb2.Object | None) -> list[Ref]:
    """The keys the task controller's Container watch maps this change to."""
    watch = next(w for w in CONTROLLER.watches if w.kind == kinds.CONTAINER)
    return list(watch.map(cast(TaskController, None), Delta(old, new)))  # mappers ignore it


def changed(obj: object_pb2.Object, **status: object) -> object_pb2.Object:
    new = clone(obj)
    for field, value in status.items():
        setattr(new.container.status, field, value)
    return new


def test_placing_and_running_an_attempt_wake_nothing() -> None:
    created = new_container(task(), 3, 0, "c3.txt")
    assert woken(None, created) == [], "the controller's own create"
    bound = clone(created)
    bound.container.spec.node_name = "n1"
    bound.metadata.labels[conventions.NODE_LABEL] = "n1"
    bound.container.status.phase = "Pending"
    assert woken(created, bound) == []
    running = changed(bound, phase="Running")
    assert woken(bound, running) == []


def test_an_attempt_that_ends_is_deleted_or_goes_wakes_its_task() -> None:
    running = changed(new_container(task(), 3, 0, "c3.txt"), phase="Running")
    exited = changed(running, phase="Exited", exit_code=0)
    exited.container.status.finished_at.seconds = 100
    assert woken(running, exited) == [TASK]
    assert woken(running, changed(running, phase="Lost")) == [TASK]
    assert woken(running, changed(running, phase="Failed", exit_code=2)) == [TASK]
    assert woken(exited, changed(exited, exit_code=1)) == [TASK]
    stopping = clone(running)
    stopping.metadata.deletion_timestamp.seconds = 5
    assert woken(running, stopping) == [TASK]
    assert woken(running, None) == [TASK]
    assert woken(None, exited) == [TASK], "found ended (a relist after a gap)"
    assert woken(running, running) == [TASK], "a resync: a new leader looks again"
