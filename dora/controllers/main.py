"""``dora-controllers``: the workload controller, the scheduler, the node
lifecycle, volume, credit and task controllers of one or more zones, leader-elected.

    dora-controllers --server 127.0.0.1:3000 --token-file /etc/dora/token --zones dc-rov-01
    dora-controllers ... --zones a,b      # two zones, one manager each
    dora-controllers ... --zones all      # every Zone, and each new one within seconds

Run two or more replicas per zone: one leads (it holds the Lease
``controllers`` in the zone), the others keep warm caches and take over within
``--lease-ttl`` seconds when it goes. SIGINT/SIGTERM stop it gracefully: the
leader gives its lease back so a standby takes over at once.

A process that serves named zones also watches every zone for Workloads that no
``dora-controllers`` serves, and marks them (``zones.UnservedZones``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from dora.api import conventions
from dora.api.client import Client, target_of
from dora.controllers import zones as zones_module
from dora.controllers.credit import accrual as credit_accrual
from dora.controllers.credit.reconciler import CreditController
from dora.controllers.events import Recorder
from dora.controllers.gpuhealth import GPUHealthController
from dora.controllers.nodelifecycle import NodeLifecycle
from dora.controllers.scheduler.reconciler import Scheduler
from dora.controllers.task.reconciler import TaskController
from dora.controllers.volume import VolumeController
from dora.controllers.workload import versions
from dora.controllers.workload.reconciler import CREATE_BATCH, WorkloadController
from dora.observability import endpoint as endpoint_
from dora.observability import logs
from dora.runtime.clock import Clock, RealClock
from dora.runtime.leader import LeaderElector
from dora.runtime.manager import Manager

log = logging.getLogger("dora.controllers")

CONTROLLERS = ("workload", "scheduler", "nodelifecycle", "volume", "credit", "task",
               "gpuhealth")


@dataclass
class Options:
    zone: str = "default"
    controllers: tuple[str, ...] = CONTROLLERS
    identity: str = ""
    lease_ttl: int = 10
    lease_name: str = conventions.CONTROLLERS_LEASE
    elect: bool = True
    node_grace: float = 15.0
    fence_margin: float = 5.0
    rollout_timeout: float = 60.0
    resync: float = 300.0
    stall_timeout: float = 60.0
    workers: int = 4
    scheduler_workers: int = 16
    seed: int | None = None
    credit_week_start: str = "monday"
    credit_interval: float = 60.0
    task_backoff: float = 10.0
    create_batch: int = CREATE_BATCH
    version_history: int = versions.HISTORY


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def check(options: Options) -> None:
    """Raise ``ValueError`` saying what is wrong with ``options``."""
    unknown = set(options.controllers) - set(CONTROLLERS)
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(CONTROLLERS)}")
    if not options.controllers:
        raise ValueError("--controllers names none")
    if options.lease_ttl < 2:
        raise ValueError("--lease-ttl must be at least 2 seconds")
    credit_accrual.weekday(options.credit_week_start)
    if options.credit_interval <= 0:
        raise ValueError("--credit-interval must be more than 0 seconds")
    if options.task_backoff < 0:
        raise ValueError("--task-backoff must be at least 0 seconds")
    if options.create_batch < 1:
        raise ValueError("--create-batch must be at least 1")
    if options.version_history < 1:
        raise ValueError("--version-history must be at least 1")


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
    if "workload" in options.controllers:
        WorkloadController(client=client, cache=manager.cache, clock=clock, recorder=recorder,
                           rollout_timeout=options.rollout_timeout,
                           create_batch=options.create_batch,
                           version_history=options.version_history,
                           ).register(manager, workers=options.workers)
    if "scheduler" in options.controllers:
        rng = random.Random(options.seed)
        Scheduler(client=client, cache=manager.cache, zone=options.zone, clock=clock,
                  recorder=recorder, rng=rng).register(manager, workers=options.scheduler_workers)
    if "nodelifecycle" in options.controllers:
        NodeLifecycle(client=client, cache=manager.cache, clock=clock, recorder=recorder,
                      zone=options.zone, grace=options.node_grace,
                      fence_margin=options.fence_margin).register(manager)
    if "gpuhealth" in options.controllers:
        GPUHealthController(cache=manager.cache, recorder=recorder,
                            zone=options.zone).register(manager)
    if "volume" in options.controllers:
        VolumeController(client=client, cache=manager.cache, clock=clock, recorder=recorder,
                         zone=options.zone).register(manager)
    if "credit" in options.controllers:
        CreditController(client=client, cache=manager.cache, clock=clock, recorder=recorder,
                         zone=options.zone,
                         week_start_day=credit_accrual.weekday(options.credit_week_start),
                         interval=options.credit_interval).register(manager)
    if "task" in options.controllers:
        TaskController(client=client, cache=manager.cache, clock=clock,
                       backoff=options.task_backoff).register(manager, workers=options.workers)
    return manager


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dora-controllers",
        description="Dora's workload controller, scheduler, node lifecycle, volume and "
                    "credit controllers for one zone (leader-elected).",
    )
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
    parser.add_argument("--controllers", default=",".join(CONTROLLERS),
                        help=f"which controllers to run (default: {','.join(CONTROLLERS)})")
    parser.add_argument("--identity", default="",
                        help="this replica's name in the leader lease (default: hostname-pid)")
    parser.add_argument("--lease-ttl", type=int, default=10,
                        help="seconds a dead leader is waited for (default 10)")
    parser.add_argument("--lease-name", default=conventions.CONTROLLERS_LEASE,
                        help="the Lease that elects the leader (default: controllers)")
    parser.add_argument("--fence-margin", type=float, default=5.0,
                        help="seconds after a node's lease expired before its containers "
                             "are replaced (its agent has stopped them by then); "
                             "config.replacement: Eager workloads do not wait")
    parser.add_argument("--node-grace", type=float, default=15.0,
                        help="seconds a node that reported may go without its lease "
                             "before its containers are replaced, when its lease was not "
                             "seen to expire (default 15)")
    parser.add_argument("--rollout-timeout", type=float, default=60.0,
                        help="seconds a new container may wait unscheduled before an old "
                             "one is replaced anyway (default 60)")
    parser.add_argument("--resync", type=float, default=300.0,
                        help="seconds between full resyncs of the caches (default 300)")
    parser.add_argument("--workers", type=int, default=4, help="reconciles at once, per "
                        "controller (default 4)")
    parser.add_argument("--scheduler-workers", type=int, default=16,
                        help="binds at once (default 16): each is a few apiserver round "
                             "trips, and choosing the nodes is done one at a time anyway")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the Random placement strategy")
    parser.add_argument("--credit-week-start", default="monday",
                        help="the day (UTC) the credit week starts (default monday)")
    parser.add_argument("--credit-interval", type=float, default=60.0,
                        help="seconds between credit updates while a user's containers "
                             "run (default 60)")
    parser.add_argument("--task-backoff", type=float, default=10.0,
                        help="seconds before a failed task job's first retry; doubled at "
                             "each further failure, at most 300 (default 10)")
    parser.add_argument("--create-batch", type=int, default=CREATE_BATCH,
                        help="containers one reconcile of a workload creates at most "
                             f"before it reads the spec again (default {CREATE_BATCH})")
    parser.add_argument("--version-history", type=int, default=versions.HISTORY,
                        help="versions kept per workload, the oldest pruned (default "
                             f"{versions.HISTORY})")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS,
                        help="text, or json: one JSON object per line")
    parser.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                        help="serve /metrics (Prometheus), /healthz and /readyz here; "
                             "default: off")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        zone=args.zone,
        controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()),
        identity=args.identity or default_identity(),
        lease_ttl=args.lease_ttl,
        lease_name=args.lease_name,
        node_grace=args.node_grace,
        fence_margin=args.fence_margin,
        rollout_timeout=args.rollout_timeout,
        resync=args.resync,
        workers=args.workers,
        scheduler_workers=args.scheduler_workers,
        seed=args.seed,
        credit_week_start=args.credit_week_start,
        credit_interval=args.credit_interval,
        task_backoff=args.task_backoff,
        create_batch=args.create_batch,
        version_history=args.version_history,
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
    zones_module.UnservedZones(client=client, clock=clock, recorder=recorder,
                               grace=grace).register(manager)
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
            manager = managers[zone] = build(client, dataclasses.replace(options, zone=zone))
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
