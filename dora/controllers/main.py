"""``dora-controllers``: the registered controllers (the workload controller, the
scheduler, the node lifecycle, volume, credit and task controllers, and any other
module's) of one or more zones, leader-elected.

    dora-controllers --server 127.0.0.1:3000 --token-file /etc/dora/token --zones dc-rov-01
    dora-controllers ... --zones a,b      # two zones, one manager each
    dora-controllers ... --zones all      # every Zone, and each new one within seconds

Run two or more replicas per zone: one leads (it holds the Lease
``controllers`` in the zone), the others keep warm caches and take over within
``--lease-ttl`` seconds when it goes. SIGINT/SIGTERM stop it gracefully: the
leader gives its lease back so a standby takes over at once.

Its command line is built from ``dora.runtime.registry.REGISTRY``: the process-wide
flags here, then each registered controller's options; ``--controllers`` chooses
among the registered controllers (default: those marked ``default``), and
``--load MODULE`` imports a third party's module that registers more.

A process that serves named zones also watches every zone for Workloads that no
``dora-controllers`` serves, and marks them (``zones.UnservedZones``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib
import logging
import os
import pkgutil
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

import dora.controllers
from dora.api import conventions
from dora.api.client import Client, target_of
from dora.controllers import zones as zones_module
from dora.controllers.events import Recorder
from dora.observability import endpoint as endpoint_
from dora.observability import logs
from dora.runtime.clock import Clock, RealClock
from dora.runtime.leader import LeaderElector
from dora.runtime.manager import Manager
from dora.runtime.registry import REGISTRY

log = logging.getLogger("dora.controllers")


def load_controllers(modules: Sequence[str] = ()) -> None:
    """Import every module of ``dora.controllers`` (each registers its controller, if it
    has one) and ``modules`` (a third party's)."""
    for info in pkgutil.walk_packages(dora.controllers.__path__, "dora.controllers."):
        importlib.import_module(info.name)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--load {name}: {exc}") from exc


class Options:
    """What one zone's manager runs: the process-wide settings as attributes, and each
    registered controller's options (``node_grace``, ``credit_interval``...) as
    attributes too, their defaults from the registry."""

    def __init__(self, *, zone: str = "default", controllers: tuple[str, ...] | None = None,
                 identity: str = "", lease_ttl: int = 10,
                 lease_name: str = conventions.CONTROLLERS_LEASE, elect: bool = True,
                 resync: float = 300.0, stall_timeout: float = 60.0, workers: int = 4,
                 **settings: Any) -> None:
        load_controllers()
        self.zone = zone
        self.controllers = REGISTRY.defaults() if controllers is None else controllers
        self.identity = identity
        self.lease_ttl = lease_ttl
        self.lease_name = lease_name
        self.elect = elect
        self.resync = resync
        self.stall_timeout = stall_timeout
        self.workers = workers
        self.settings: dict[str, Any] = REGISTRY.option_defaults()
        for name, value in settings.items():
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"no option {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        settings = self.__dict__.get("settings")
        if settings is not None and name in settings:
            settings[name] = value
        elif settings is not None and name not in self.__dict__:
            raise TypeError(f"no option {name!r}: known are "
                            f"{', '.join(sorted([*self.__dict__, *settings]))}")
        else:
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> Options:
        made = copy.copy(self)
        object.__setattr__(made, "settings", dict(self.settings))
        for name, value in changes.items():
            setattr(made, name, value)
        return made

    def values(self) -> dict[str, Any]:
        """What the controllers are built with: their options and ``workers``."""
        return {**self.settings, "workers": self.workers}


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def check(options: Options) -> None:
    """Raise ``ValueError`` saying what is wrong with ``options``."""
    unknown = set(options.controllers) - set(REGISTRY.names())
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(REGISTRY.names())}")
    if not options.controllers:
        raise ValueError("--controllers names none")
    if options.lease_ttl < 2:
        raise ValueError("--lease-ttl must be at least 2 seconds")
    REGISTRY.check(options.settings)


def build(client: Client, options: Options, *, clock: Clock | None = None) -> Manager:
    """A manager running the chosen controllers against ``client``."""
    clock = clock or RealClock()
    check(options)
    elector = None
    if options.elect:
        elector = LeaderElector(client=client, zone=options.zone,
                                identity=options.identity or default_identity(),
                                clock=clock, name=options.lease_name, ttl=options.lease_ttl)
    manager = Manager(client=client, zone=options.zone, clock=clock, elector=elector,
                      resync=options.resync, stall_timeout=options.stall_timeout)
    recorder = Recorder(client=client, clock=clock, source="dora-controllers")
    manager.add_background(recorder.run)
    values = options.values()
    for name in options.controllers:
        manager.add(REGISTRY.get(name), client=client, recorder=recorder, options=values)
    return manager


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    # First the modules to load: their controllers' options are part of the command line.
    load_controllers(_modules_to_load(sys.argv[1:] if argv is None else argv))
    controllers = "\n".join(f"  {s.name:<15} {s.help}{'' if s.default else ' (not by default)'}"
                            for s in REGISTRY)
    parser = argparse.ArgumentParser(
        prog="dora-controllers",
        description="Dora's controllers for one or more zones (leader-elected).",
        epilog=f"controllers:\n{controllers}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--load", default="", metavar="MODULE[,MODULE]",
                        help="Python modules to import first: each registers its "
                             "controllers (and their options) in dora.runtime's registry")
    parser.add_argument("--server", default=os.environ.get("DORA_SERVER", "127.0.0.1:3000"),
                        help="apiserver HOST:PORT, or several separated by commas")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="a file holding the token to authenticate with")
    parser.add_argument("--zone", default="default",
                        help="the zone to control (one; --zones says several)")
    parser.add_argument("--zones", default="",
                        help="the zones to control: a,b or all (every Zone, also those "
                             "made later); overrides --zone")
    parser.add_argument("--unserved-grace", type=float, default=5.0,
                        help="seconds a Workload may sit in a zone no dora-controllers "
                             "serves before it is marked ZoneUnserved (default 5)")
    defaults = ",".join(REGISTRY.defaults())
    parser.add_argument("--controllers", default=defaults,
                        help=f"which controllers to run (default: {defaults})")
    parser.add_argument("--identity", default="",
                        help="this replica's name in the leader lease (default: hostname-pid)")
    parser.add_argument("--lease-ttl", type=int, default=10,
                        help="seconds a dead leader is waited for (default 10)")
    parser.add_argument("--lease-name", default=conventions.CONTROLLERS_LEASE,
                        help="the Lease that elects the leader (default: controllers)")
    parser.add_argument("--resync", type=float, default=300.0,
                        help="seconds between full resyncs of the caches (default 300)")
    parser.add_argument("--workers", type=int, default=4, help="reconciles at once, per "
                        "controller (default 4)")
    for option in REGISTRY.options():
        option.add_to(parser)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS,
                        help="text, or json: one JSON object per line")
    parser.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                        help="serve /metrics (Prometheus), /healthz and /readyz here; "
                             "default: off")
    return parser.parse_args(argv)


def _modules_to_load(argv: Sequence[str]) -> list[str]:
    """The modules ``--load`` names (``--load a,b``, ``--load=a``, repeated or not)."""
    found: list[str] = []
    for i, arg in enumerate(argv):
        value = None
        if arg == "--load" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--load="):
            value = arg.removeprefix("--load=")
        if value is not None:
            found.extend(m.strip() for m in value.split(",") if m.strip())
    return found


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        zone=args.zone,
        controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()),
        identity=args.identity or default_identity(),
        lease_ttl=args.lease_ttl,
        lease_name=args.lease_name,
        resync=args.resync,
        workers=args.workers,
        **{o.name: getattr(args, o.name) for o in REGISTRY.options()},
    )


def zones_of(args: argparse.Namespace) -> tuple[str, ...]:
    return zones_module.parse_zones(args.zones) if args.zones else (args.zone,)


def watchdog(client: Client, options: Options, *, zone: str, grace: float,
             clock: Clock | None = None) -> Manager:
    """The manager of ``zones.UnservedZones``: every zone's Workloads and Leases,
    leader-elected in ``zone`` (the first zone this process serves)."""
    clock = clock or RealClock()
    elector = None
    if options.elect:
        elector = LeaderElector(client=client, zone=zone,
                                identity=options.identity or default_identity(), clock=clock,
                                name=zones_module.WATCHDOG_LEASE, ttl=options.lease_ttl)
    manager = Manager(client=client, zone="", clock=clock, elector=elector,
                      resync=options.resync, stall_timeout=options.stall_timeout)
    recorder = Recorder(client=client, clock=clock, source="dora-controllers")
    manager.add_background(recorder.run)
    manager.add(zones_module.WATCHDOG, client=client, recorder=recorder,
                options={"unserved_grace": grace})
    return manager


async def serve(args: argparse.Namespace) -> None:
    token = args.token_file.read_text().strip() if args.token_file else None
    options = options_from(args)
    zones = zones_of(args)
    target = target_of([s for s in args.server.split(",") if s])
    async with Client(target, token=token) as client:
        managers: dict[str, Manager] = {}
        endpoint = _endpoint(args.metrics_listen, managers)

        async def run_zone(zone: str) -> None:
            manager = managers[zone] = build(client, options.replace(zone=zone))
            try:
                await manager.run()
            finally:
                managers.pop(zone, None)

        async def run_all() -> None:
            async with anyio.create_task_group() as parts:
                parts.start_soon(functools.partial(
                    zones_module.run_zones, zones=zones, run_zone=run_zone, client=client))
                if zones != (zones_module.ALL,):
                    parts.start_soon(watchdog(client, options, zone=zones[0],
                                              grace=args.unserved_grace).run)

        log.info("dora-controllers %s for zones %s: %s", options.identity, ",".join(zones),
                 ", ".join(options.controllers))
        async with anyio.create_task_group() as group:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("%s: stopping", signal.Signals(signum).name)
                        group.cancel_scope.cancel()
                        return

            group.start_soon(stop_on_signal)
            try:
                await run_all()
            finally:
                if endpoint is not None:
                    endpoint.stop()
            group.cancel_scope.cancel()


def _endpoint(listen: str, managers: dict[str, Manager]) -> endpoint_.Endpoint | None:
    """The /metrics, /healthz and /readyz server, when asked for. Ready once every
    served zone's informers have listed; the body says leader or standby in each zone
    (both are ready): ``leader`` alone when it leads them all."""
    if not listen:
        return None
    host, port = endpoint_.parse_listen(listen)

    def ready() -> tuple[bool, str]:
        serving = dict(managers)
        if not serving:
            return False, "no zone served yet"
        syncing = sorted(zone for zone, m in serving.items() if not m.synced())
        if syncing:
            return False, f"informers syncing in {', '.join(syncing)}"
        roles = {zone: "leader" if m.is_leading else "standby" for zone, m in serving.items()}
        if len(set(roles.values())) == 1:
            return True, next(iter(roles.values()))
        return True, ", ".join(f"{role} in {zone}" for zone, role in sorted(roles.items()))

    served = endpoint_.Endpoint(host=host, port=port, readyz=ready)
    served.start()
    log.info("metrics and health on http://%s:%d/metrics", host, served.port)
    return served


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logs.configure(level=args.log_level, format=args.log_format)
    try:
        check(options_from(args))
        zones_of(args)
        if args.metrics_listen:
            endpoint_.parse_listen(args.metrics_listen)
        if args.token_file and not args.token_file.is_file():
            raise ValueError(f"--token-file {args.token_file}: no such file")
        anyio.run(serve, args)
    except ValueError as exc:
        print(f"dora-controllers: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
