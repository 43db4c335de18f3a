"""``dora-apiserver``: the command that runs the apiserver."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
from pathlib import Path

from dora.api import agentauth
from dora.apiserver.admission import limits as bounds
from dora.apiserver.gate import Limits
from dora.apiserver.registry import Scope
from dora.apiserver.server import APIServer, Config
from dora.apiserver.storage import TLS
from dora.observability import endpoint, logs


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="dora-apiserver", description="Serve the Dora API from etcd over gRPC."
    )
    parser.add_argument("--etcd-endpoints", default="127.0.0.1:2379",
                        help="comma-separated etcd endpoints (host:port)")
    parser.add_argument("--listen", default="0.0.0.0:3000", help="HOST:PORT to serve gRPC on")
    # Seed 004 starts each apiserver with ZONE=<its zone>: objects that name no zone
    # (its Resourcecredit) go there, not into a zone the admin never made.
    parser.add_argument("--default-zone",
                        default=os.environ.get("DORA_ZONE") or os.environ.get("ZONE") or "default",
                        help="zone of objects that name none (env DORA_ZONE or ZONE; "
                             "default: default)")
    parser.add_argument("--default-workspace", default="default",
                        help="workspace of objects that name none")
    parser.add_argument("--etcd-cacert", type=Path, help="CA bundle to verify etcd with")
    parser.add_argument("--etcd-cert", type=Path, help="client certificate for etcd")
    parser.add_argument("--etcd-key", type=Path, help="client key for etcd")
    parser.add_argument("--admin-token-file", type=Path,
                        help="where to write the admin token made at the first start")
    parser.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="the key of --tls-cert (PEM)")
    parser.add_argument("--watch-window", type=int, default=10_000,
                        help="recent events kept per kind for watchers to resume from")
    parser.add_argument("--agent-secret-file", type=Path,
                        help="file holding the secret node agents accept (the same file as "
                             "dora-agent's --agent-secret-file); without it logs and exec "
                             "are unavailable")
    parser.add_argument("--agent-ca", type=Path,
                        help="CA bundle to verify agents whose Node endpoint is https://")
    parser.add_argument("--max-requests-per-user", type=int, default=Limits.per_user,
                        help="unary calls one user may have in flight at once; up to ten "
                             "times as many wait, then RESOURCE_EXHAUSTED (default "
                             f"{Limits.per_user})")
    parser.add_argument("--max-unauthenticated", type=int, default=Limits.unauthenticated,
                        help="token lookups (tokens not seen in the last second) at once "
                             f"(default {Limits.unauthenticated})")
    parser.add_argument("--audit-log", type=Path, metavar="FILE",
                        help="append one JSON line per mutating call (who, verb, kind, "
                             "zone/workspace/name, result) to FILE")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS,
                        help="text, or json: one JSON object per line")
    parser.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                        help="serve /metrics (Prometheus), /healthz and /readyz here, and "
                             "count and time every request; default: off")
    bounds.add_flags(parser)
    args = parser.parse_args(argv)
    if args.metrics_listen:
        try:
            endpoint.parse_listen(args.metrics_listen)
        except ValueError as exc:
            parser.error(str(exc))
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.max_requests_per_user < 1 or args.max_unauthenticated < 1:
        parser.error("--max-requests-per-user and --max-unauthenticated must be at least 1")
    try:
        admission_bounds = bounds.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    agent_secret = None
    if args.agent_secret_file is not None:
        try:
            agent_secret = agentauth.read_secret_file(args.agent_secret_file)
        except agentauth.SecretError as exc:
            parser.error(str(exc))
    logs.configure(level=args.log_level, format=args.log_format)
    tls = None
    if args.etcd_cacert or args.etcd_cert:
        tls = TLS(
            ca=args.etcd_cacert.read_bytes() if args.etcd_cacert else None,
            cert=args.etcd_cert.read_bytes() if args.etcd_cert else None,
            key=args.etcd_key.read_bytes() if args.etcd_key else None,
        )
    return Config(
        etcd_endpoints=[e.strip() for e in args.etcd_endpoints.split(",") if e.strip()],
        listen=args.listen,
        scope=Scope(zone=args.default_zone, workspace=args.default_workspace),
        etcd_tls=tls,
        tls_cert=args.tls_cert.read_bytes() if args.tls_cert else None,
        tls_key=args.tls_key.read_bytes() if args.tls_key else None,
        admin_token_file=args.admin_token_file,
        watch_window=args.watch_window,
        agent_secret=agent_secret,
        agent_ca=args.agent_ca.read_bytes() if args.agent_ca else None,
        metrics_listen=args.metrics_listen,
        audit_log=args.audit_log,
        limits=Limits(per_user=args.max_requests_per_user,
                      per_user_queue=10 * args.max_requests_per_user,
                      unauthenticated=args.max_unauthenticated),
        bounds=admission_bounds,
    )


def tune_gc() -> None:
    """Keep the cyclic garbage collector's pauses out of watch fan-out.

    Everything loaded at start (modules, the watch cache's first listing) is moved
    out of the collector's reach, and it runs after 50,000 allocations rather than
    700: a full collection over a thousand watchers' streams stopped the event loop
    for 20-40 ms several times a minute under load, delaying every delivery pending
    at the time (the p99 of ``bench.apiserver.watch_fanout``).
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def serve(config: Config) -> None:
    server = APIServer(config)
    await server.start()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait())
    await asyncio.wait([waiter, asyncio.create_task(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    await server.stop()
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
