"""``dora-controllers``: the workload controller, the scheduler, the node
lifecycle, volume, credit and task controllers of one zone, leader-elected.

    dora-controllers --server 127.0.0.1:3000 --token-file /etc/dora/token --zone dc-rov-01

Run two or more replicas per zone: one leads (it holds the Lease
``controllers`` in the zone), the others keep warm caches and take over within
``--lease-ttl`` seconds when it goes. SIGINT/SIGTERM stop it gracefully: the
leader gives its lease back so a standby takes over at once.
"""

from __future__ import annotations

import argparse
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
from dora.controllers.credit import accrual as credit_accrual
from dora.controllers.credit.reconciler import CreditController
from dora.controllers.events import Recorder
from dora.controllers.nodelifecycle import NodeLifecycle
from dora.controllers.runtime.clock import Clock, RealClock
from dora.controllers.runtime.leader import LeaderElector
from dora.controllers.runtime.manager import Manager
from dora.controllers.scheduler.reconciler import Scheduler
from dora.controllers.task.reconciler import TaskController
from dora.controllers.volume import VolumeController
from dora.controllers.workload.reconciler import WorkloadController

log = logging.getLogger("dora.controllers")

CONTROLLERS = ("workload", "scheduler", "nodelifecycle", "volume", "credit", "task")


@dataclass
class Options:
    zone: str = "default"
    controllers: tuple[str, ...] = CONTROLLERS
    identity: str = ""
    lease_ttl: int = 10
    lease_name: str = conventions.CONTROLLERS_LEASE
    elect: bool = True
    node_grace: float = 15.0
    rollout_timeout: float = 60.0
    resync: float = 300.0
    stall_timeout: float = 60.0
    workers: int = 4
    scheduler_workers: int = 16
    seed: int | None = None
    credit_week_start: str = "monday"
    credit_interval: float = 60.0
    task_backoff: float = 10.0


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
                           ).register(manager, workers=options.workers)
    if "scheduler" in options.controllers:
        rng = random.Random(options.seed)
        Scheduler(client=client, cache=manager.cache, zone=options.zone, clock=clock,
                  recorder=recorder, rng=rng).register(manager, workers=options.scheduler_workers)
    if "nodelifecycle" in options.controllers:
        NodeLifecycle(client=client, cache=manager.cache, clock=clock, recorder=recorder,
                      zone=options.zone, grace=options.node_grace).register(manager)
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
    parser.add_argument("--zone", default="default", help="the zone to control")
    parser.add_argument("--controllers", default=",".join(CONTROLLERS),
                        help=f"which controllers to run (default: {','.join(CONTROLLERS)})")
    parser.add_argument("--identity", default="",
                        help="this replica's name in the leader lease (default: hostname-pid)")
    parser.add_argument("--lease-ttl", type=int, default=10,
                        help="seconds a dead leader is waited for (default 10)")
    parser.add_argument("--lease-name", default=conventions.CONTROLLERS_LEASE,
                        help="the Lease that elects the leader (default: controllers)")
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
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        zone=args.zone,
        controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()),
        identity=args.identity or default_identity(),
        lease_ttl=args.lease_ttl,
        lease_name=args.lease_name,
        node_grace=args.node_grace,
        rollout_timeout=args.rollout_timeout,
        resync=args.resync,
        workers=args.workers,
        scheduler_workers=args.scheduler_workers,
        seed=args.seed,
        credit_week_start=args.credit_week_start,
        credit_interval=args.credit_interval,
        task_backoff=args.task_backoff,
    )


async def serve(args: argparse.Namespace) -> None:
    token = args.token_file.read_text().strip() if args.token_file else None
    options = options_from(args)
    target = target_of([s for s in args.server.split(",") if s])
    async with Client(target, token=token) as client:
        manager = build(client, options)
        log.info("dora-controllers %s for zone %s: %s", options.identity, options.zone,
                 ", ".join(options.controllers))
        async with anyio.create_task_group() as group:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("%s: stopping", signal.Signals(signum).name)
                        group.cancel_scope.cancel()
                        return

            group.start_soon(stop_on_signal)
            await manager.run()
            group.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check(options_from(args))
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
