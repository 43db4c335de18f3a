"""The manager: informers, controllers and leader election, started together.

Controllers declare what they watch: ``add(spec, ...)`` takes a declarative
``registry.ControllerSpec`` (its ``handlers.Watch``es bound to the reconciler
it builds); ``add_controller`` is the level below: a reconciler and, per kind,
how an event maps to its keys (``Watch`` here) and the ``hooks`` that see
events. The manager runs one informer per kind, shared
by every controller that watches it, so caches are warm on standby replicas
too; only the leader runs the controllers' workers. When a replica starts to
lead, every cached object is mapped to keys once (the first full resync), so
nothing that happened while it was standby is missed; when it stops leading,
the workers are cancelled and their queues dropped.

``background`` tasks (the event recorder) run for the life of the manager, and
every ``report_every`` seconds each controller's counters are logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from dora.api import kinds, objects
from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.observability import metrics
from dora.runtime import handlers
from dora.runtime.cache import Cache, Delta, IndexFunc, Store
from dora.runtime.clock import Clock
from dora.runtime.informer import Informer, ListWatcher
from dora.runtime.leader import LeaderElector
from dora.runtime.reconcile import Controller, OnTerminal, Reconciler
from dora.runtime.registry import ControllerSpec, EventRecorder, Setup

log = logging.getLogger(__name__)

KeyFunc = Callable[[Delta], Iterable[Ref]]
R = TypeVar("R", bound=Reconciler)


@dataclass(frozen=True)
class Watch:
    kind: str
    keys: KeyFunc


def own_key(delta: Delta) -> list[Ref]:
    return [objects.ref_of(delta.object)]


@dataclass
class _Registered:
    controller: Controller
    watches: list[Watch] = field(default_factory=list)


class Manager:
    def __init__(
        self,
        *,
        client: ListWatcher,
        zone: str,
        clock: Clock,
        elector: LeaderElector | None = None,
        resync: float = 300.0,
        stall_timeout: float = 60.0,
        report_every: float = 300.0,
    ) -> None:
        self.client = client
        self.zone = zone
        self.clock = clock
        self.elector = elector
        self.resync = resync
        self.stall_timeout = stall_timeout
        self.report_every = report_every
        self.cache = Cache()
        self.informers: dict[str, Informer] = {}
        self._controllers: list[_Registered] = []
        self._background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.is_leading = False

    @property
    def controllers(self) -> list[Controller]:
        return [r.controller for r in self._controllers]

    def store(self, kind: str, *, indexers: dict[str, IndexFunc] | None = None) -> Store:
        """The cache of ``kind`` (with an informer to fill it), with these indexes added."""
        informer = self.informers.get(kind)
        if informer is None:
            store = Store(kind)
            # A kind outside zones (User) is watched whole: filtered by zone, nothing.
            zone = self.zone if kinds.get(kind).zoned else ""
            informer = Informer(client=self.client, store=store, clock=self.clock,
                                zone=zone, resync=self.resync,
                                stall_timeout=self.stall_timeout)
            self.informers[kind] = informer
            self.cache.add(store)
        for name, func in (indexers or {}).items():
            informer.store.add_index(name, func)
        return informer.store

    def add_controller(
        self,
        reconciler: Reconciler,
        *,
        watches: list[Watch],
        workers: int = 4,
        on_terminal: OnTerminal | None = None,
        hooks: Iterable[tuple[str, Callable[[Delta], None]]] = (),
    ) -> Controller:
        """Run ``reconciler`` on the keys ``watches`` map events to; ``hooks`` (kind,
        handler) see every event of their kind first, leader or not."""
        if any(r.controller.name == reconciler.name for r in self._controllers):
            raise ValueError(f"a controller named {reconciler.name!r} is already added")
        controller = Controller(reconciler=reconciler, clock=self.clock, workers=workers,
                                on_terminal=on_terminal)
        controller.queue.shutdown()  # replaced by a live queue when leading
        registered = _Registered(controller, list(watches))
        self._controllers.append(registered)
        for kind, hook in hooks:
            self.store(kind)
            self.informers[kind].add_handler(hook)
        for watch in watches:
            self.store(watch.kind)
            self.informers[watch.kind].add_handler(_enqueuer(controller, watch.keys))
        return controller

    def add(self, spec: ControllerSpec[R], *, client: ResourceClient,
            recorder: EventRecorder, options: dict[str, Any]) -> R:
        """Build the controller ``spec`` declares and run it here; its reconciler."""
        for kind, indexes in spec.indexes.items():
            self.store(kind, indexers=dict(indexes))
        for kind in spec.kinds():
            self.store(kind)
        running: list[Controller] = []

        def enqueue(key: Ref) -> None:
            for controller in running:
                controller.enqueue(key)

        reconciler = spec.build(Setup(client=client, cache=self.cache, clock=self.clock,
                                      zone=self.zone, recorder=recorder, options=options,
                                      enqueue=enqueue))
        running.append(self.add_controller(
            reconciler, workers=spec.workers_of(options),
            watches=[Watch(w.kind, _bound(w, reconciler)) for w in spec.watches],
            hooks=[(h.kind, _hook(h, reconciler)) for h in spec.hooks],
        ))
        for task in spec.background:
            self.add_background(functools.partial(task, reconciler))
        return reconciler

    def add_background(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._background.append(task)

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            for informer in self.informers.values():
                group.start_soon(informer.run)
            for task in self._background:
                group.start_soon(task)
            if self.report_every > 0:
                group.start_soon(self._report)
            await self.wait_synced()
            if self.elector is None:
                await self._lead()
            else:
                await self.elector.run(self._lead)
            group.cancel_scope.cancel()

    async def _report(self) -> None:
        """Log every controller's counters now and then."""
        while True:
            await self.clock.sleep(self.report_every)
            for controller in self.controllers:
                counts = ", ".join(f"{k} {v}" for k, v in sorted(controller.counters.items()))
                log.info("%s: %s (%d queued)%s", controller.name, counts or "idle",
                         len(controller.queue), "" if self.is_leading else " standby")

    def synced(self) -> bool:
        """Whether every informer has listed once (what ``/readyz`` waits for)."""
        return all(informer.synced.is_set() for informer in self.informers.values())

    async def wait_synced(self) -> None:
        for informer in self.informers.values():
            await informer.synced.wait()

    async def _lead(self) -> None:
        self.is_leading = True
        metrics.LEADER.set(1)
        try:
            async with anyio.create_task_group() as group:
                for registered in self._controllers:
                    controller = registered.controller
                    controller.reset()
                    for watch in registered.watches:
                        for obj in self.cache.store(watch.kind):
                            for key in watch.keys(Delta(obj, obj)):
                                controller.enqueue(key)
                    group.start_soon(controller.run)
                log.info("controllers running: %s",
                         ", ".join(r.controller.name for r in self._controllers))
        finally:
            self.is_leading = False
            metrics.LEADER.set(0)
            for registered in self._controllers:
                registered.controller.queue.shutdown()


def _enqueuer(controller: Controller, keys: KeyFunc) -> Callable[[Delta], None]:
    def handle(delta: Delta) -> None:
        if controller.queue.shut_down:
            return
        for key in keys(delta):
            controller.enqueue(key)

    return handle


def _bound(watch: handlers.Watch[R], reconciler: R) -> KeyFunc:
    return lambda event: watch.map(reconciler, event)


def _hook(hook: handlers.Hook[R], reconciler: R) -> Callable[[Delta], None]:
    return lambda event: hook.handle(reconciler, event)
