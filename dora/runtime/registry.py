"""Declarative controllers: one object says all a process needs to run one.

A ``ControllerSpec`` names a controller and says what it watches (``Watch``:
kind, predicate, key mapper), how it reacts to events itself (``Hook``), the
indexes it reads, how many reconciles it runs at once, its command-line
``Option``s (with defaults, help and a check), and how its reconciler is built
from a ``Setup`` (the client, the cache, the clock, the zone, the event
recorder, the option values). A module registers its spec in ``REGISTRY``
when imported (``CONTROLLER = REGISTRY.add(ControllerSpec(...))``: the object is
the whole declaration), and ``dora-controllers`` builds its command line, its
``--controllers`` choice and its defaults from the registry: adding a
controller is adding its module.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from dora.api import kinds
from dora.api.client import ResourceClient
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.runtime.cache import Cache, IndexFunc, Store
from dora.runtime.clock import Clock
from dora.runtime.handlers import Hook, Watch
from dora.runtime.reconcile import Reconciler

R = TypeVar("R", bound=Reconciler)


class EventRecorder(Protocol):
    """Records Events about objects (``doractl describe`` shows them)."""

    def normal(self, obj: object_pb2.Object, reason: str, message: str) -> None: ...

    def warning(self, obj: object_pb2.Object, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Option:
    """A command-line option of a controller: ``--node-grace`` for ``node_grace``."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = None
    # Raises ValueError naming the flag when a value is wrong.
    check: Callable[[Any], None] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        kind = self.type or (type(self.default) if self.default is not None else str)
        shown = "" if self.default is None else f" (default {self.default})"
        parser.add_argument(self.flag, dest=self.name, type=kind, default=self.default,
                            help=self.help + shown)


def at_least(minimum: float, flag: str, unit: str = "") -> Callable[[Any], None]:
    """A check: the value is ``minimum`` or more."""

    def check(value: Any) -> None:
        if value < minimum:
            raise ValueError(f"{flag} must be at least {minimum:g}{unit}")

    return check


def more_than(minimum: float, flag: str, unit: str = "") -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value <= minimum:
            raise ValueError(f"{flag} must be more than {minimum:g}{unit}")

    return check


def _nothing(key: Ref) -> None:
    return None


@dataclass(frozen=True)
class Setup:
    """What a controller is built from."""

    client: ResourceClient
    cache: Cache
    clock: Clock
    zone: str
    recorder: EventRecorder
    options: Mapping[str, Any]
    # Queues a key of the controller being built (once it runs; nothing before).
    enqueue: Callable[[Ref], None] = _nothing

    def option(self, name: str) -> Any:
        try:
            return self.options[name]
        except KeyError:
            raise KeyError(f"no option {name!r}: declare it in the controller's "
                           "options") from None


@dataclass(frozen=True)
class ControllerSpec(Generic[R]):
    name: str
    help: str
    build: Callable[[Setup], R]
    watches: Sequence[Watch[R]]
    hooks: Sequence[Hook[R]] = ()
    # Indexes by kind, then by name.
    indexes: Mapping[str, Mapping[str, IndexFunc]] = field(default_factory=dict)
    # Kinds read from the cache without waking the controller.
    reads: Sequence[str] = ()
    # Coroutines of the reconciler run as long as the process, leader or not (they
    # only keep memory up to date: the queue's record of recent use).
    background: Sequence[Callable[[R], Coroutine[Any, Any, None]]] = ()
    # Reconciles at once: a number, or the name of an option that says it.
    workers: int | str = 2
    options: Sequence[Option] = ()
    # Run when --controllers is not given.
    default: bool = True
    # Place in the default list (lower first), then the name.
    order: int = 100

    def __post_init__(self) -> None:
        for kind in self.kinds():
            kinds.get(kind)  # an unknown kind fails at import
        own = {o.name for o in self.options}
        if isinstance(self.workers, str) and self.workers not in {*own, "workers"}:
            raise ValueError(f"controller {self.name!r}: workers names no option "
                             f"{self.workers!r}")

    def workers_of(self, options: Mapping[str, Any]) -> int:
        return int(options[self.workers]) if isinstance(self.workers, str) else self.workers

    def kinds(self) -> list[str]:
        """Every kind this controller reads (watched, hooked, indexed or read)."""
        found: list[str] = []
        for kind in [*(w.kind for w in self.watches), *(h.kind for h in self.hooks),
                     *self.indexes, *self.reads]:
            if kind not in found:
                found.append(kind)
        return found

    def new_cache(self) -> Cache:
        """Empty stores of every kind it reads, with its indexes: what a manager gives
        it, for driving its reconciler by hand (tests, benchmarks)."""
        cache = Cache()
        for kind in self.kinds():
            cache.add(Store(kind, indexers=dict(self.indexes.get(kind, {}))))
        return cache


class Registry:
    """Controllers by name; options shared by name must agree."""

    def __init__(self) -> None:
        self._specs: dict[str, ControllerSpec[Any]] = {}
        self._options: dict[str, Option] = {}

    def add(self, spec: ControllerSpec[R]) -> ControllerSpec[R]:
        known = self._specs.get(spec.name)
        if known is spec:
            return spec
        if known is not None:
            raise ValueError(f"a controller named {spec.name!r} is already registered")
        for option in spec.options:
            have = self._options.get(option.name)
            if have is not None and have != option:
                raise ValueError(f"controller {spec.name!r}: option {option.flag} is "
                                 "already declared otherwise by another controller")
        self._specs[spec.name] = spec
        for option in spec.options:
            self._options.setdefault(option.name, option)
        return spec

    def __iter__(self) -> Iterator[ControllerSpec[Any]]:
        return iter(sorted(self._specs.values(), key=lambda s: (s.order, s.name)))

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def get(self, name: str) -> ControllerSpec[Any]:
        try:
            return self._specs[name]
        except KeyError:
            raise ValueError(f"unknown controller {name!r}; known: "
                             f"{', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self)

    def defaults(self) -> tuple[str, ...]:
        """The controllers run when none are named."""
        return tuple(s.name for s in self if s.default)

    def options(self) -> list[Option]:
        """Every controller's options, in the controllers' order."""
        found: dict[str, Option] = {}
        for spec in self:
            for option in spec.options:
                found.setdefault(option.name, option)
        return list(found.values())

    def option_defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self._options.values()}

    def check(self, values: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for the first option value its check refuses."""
        for option in self._options.values():
            if option.check is not None and option.name in values:
                option.check(values[option.name])


# The controllers of this process: modules add theirs when imported.
REGISTRY = Registry()
