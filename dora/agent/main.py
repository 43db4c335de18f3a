"""``dora-agent``: the command that runs the node agent."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grpc_health.v1 import health, health_pb2

from dora.agent import inventory
from dora.agent.agent import Agent, Config
from dora.agent.docker_driver import DEFAULT_HOST, DockerDriver
from dora.agent.docker_streams import DockerStreams
from dora.agent.health import AgentHealth
from dora.agent.server import AgentServer
from dora.agent.streams import AgentStreamsService
from dora.agent.volumefiles import AgentVolumeFilesService, parse_storage_mount
from dora.agent.volumes import Resolver
from dora.api import agentauth
from dora.api.client import Client, target_of
from dora.observability import endpoint, logs

log = logging.getLogger("dora.agent")


@dataclass(frozen=True)
class Options:
    agent: Config
    servers: list[str]
    token: str | None
    ca: bytes | None
    tls: bool
    listen: tuple[str, int]
    docker_host: str
    simulated_gpus: list[str]
    # NFS Storage name -> where its export is mounted here (--storage-mount).
    storage_mounts: dict[str, str] = field(default_factory=dict)
    # The secret apiservers present (--agent-secret-file); None: every call refused.
    agent_secret: str | None = None
    # PEM certificate and key: serve --listen with TLS (a Node endpoint https://...).
    listen_cert: bytes | None = None
    listen_key: bytes | None = None
    # HOST:PORT of /metrics, /healthz, /readyz; "" is off.
    metrics_listen: str = ""
    log_format: str = "text"


def _storage_mount(value: str) -> tuple[str, str]:
    try:
        return parse_storage_mount(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _simulated(value: str) -> list[str]:
    try:
        return inventory.parse_simulated(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> tuple[Options, str]:
    parser = argparse.ArgumentParser(
        prog="dora-agent",
        description="Run the containers bound to this node on Docker, and report the node.",
    )
    parser.add_argument("--server", default="127.0.0.1:3000",
                        help="apiserver endpoint(s), comma-separated host:port or https://host:port")
    parser.add_argument("--token-file", type=Path,
                        help="file holding the node's token (seed 004: `dora token create node`)")
    parser.add_argument("--ca-file", type=Path,
                        help="CA bundle to verify the apiserver's TLS certificate with")
    parser.add_argument("--node-name", default=socket.gethostname(),
                        help="the declared Node this agent reports for (default: the hostname)")
    parser.add_argument("--zone", default="default", help="the Node's zone")
    parser.add_argument("--listen", type=_listen, default=("0.0.0.0", 3001),
                        help="HOST:PORT where apiservers reach the agent's streams (logs, "
                             "exec): the Node's spec.endpoint must point here")
    parser.add_argument("--agent-secret-file", type=Path,
                        help="file holding the secret apiservers present (the same file as "
                             "dora-apiserver's --agent-secret-file); without it every call "
                             "on --listen is refused")
    parser.add_argument("--listen-tls-cert", type=Path,
                        help="serve --listen with TLS, with this certificate (PEM), for a "
                             "Node endpoint https://...")
    parser.add_argument("--listen-tls-key", type=Path, help="the key of --listen-tls-cert")
    parser.add_argument("--docker-host", default=DEFAULT_HOST,
                        help="the Docker engine to use; DOCKER_HOST is ignored")
    parser.add_argument("--simulate-gpus", type=_simulated, default=[],
                        metavar="'2xTesla V100-SXM2-16GB'",
                        help="advertise fake GPUs instead of NVML's; the Node status says so")
    parser.add_argument("--storage-mount", type=_storage_mount, action="append", default=[],
                        metavar="NAME=DIR",
                        help="the NFS Storage NAME's export is mounted at DIR on this node: "
                             "serve its volumes' files (doractl volume, sync); repeatable")
    parser.add_argument("--fence-margin", type=float, default=3.0,
                        help="stop this node's containers when the lease has gone this many "
                             "seconds short of its TTL without a refresh (default 3)")
    parser.add_argument("--lease-ttl", type=int, default=15,
                        help="seconds without a heartbeat before the node counts as gone")
    parser.add_argument("--stop-timeout", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when a container is removed")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS,
                        help="text, or json: one JSON object per line")
    parser.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                        help="serve /metrics (Prometheus), /healthz and /readyz here; "
                             "default: off")
    args = parser.parse_args(argv)
    if args.lease_ttl < 2:
        parser.error("--lease-ttl must be at least 2 seconds")
    if args.metrics_listen:
        try:
            endpoint.parse_listen(args.metrics_listen)
        except ValueError as exc:
            parser.error(str(exc))
    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip() or None
        except OSError as exc:
            parser.error(f"cannot read --token-file: {exc}")
    servers = [s.strip() for s in args.server.split(",") if s.strip()]
    if bool(args.listen_tls_cert) != bool(args.listen_tls_key):
        parser.error("--listen-tls-cert and --listen-tls-key go together")
    secret = None
    if args.agent_secret_file is not None:
        try:
            secret = agentauth.read_secret_file(args.agent_secret_file)
        except agentauth.SecretError as exc:
            parser.error(str(exc))
    return Options(
        agent=Config(node=args.node_name, zone=args.zone, lease_ttl=args.lease_ttl,
                     fence_margin=args.fence_margin,
                     stop_timeout=args.stop_timeout),
        servers=servers,
        token=token,
        ca=args.ca_file.read_bytes() if args.ca_file else None,
        tls=any(s.startswith("https://") for s in servers),
        listen=args.listen,
        docker_host=args.docker_host,
        simulated_gpus=args.simulate_gpus,
        storage_mounts=dict(args.storage_mount),
        agent_secret=secret,
        listen_cert=args.listen_tls_cert.read_bytes() if args.listen_tls_cert else None,
        listen_key=args.listen_tls_key.read_bytes() if args.listen_tls_key else None,
        metrics_listen=args.metrics_listen,
        log_format=args.log_format,
    ), args.log_level


async def serve(options: Options) -> None:
    node = options.agent.node
    if options.simulated_gpus:
        nvml: inventory.NVML | None = inventory.SimulatedNVML(options.simulated_gpus, node=node)
        log.info("simulating %d GPU(s): %s", len(options.simulated_gpus),
                 ", ".join(sorted(set(options.simulated_gpus))))
    else:
        nvml = await asyncio.to_thread(inventory.load_nvml)
    host, port = options.listen
    streams = DockerStreams(node=node, host=options.docker_host)
    client = Client(target_of(options.servers), token=options.token,
                    root_certificates=options.ca, tls=options.tls)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    server = AgentServer(
        health=health_servicer,
        listen=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        secret=options.agent_secret,
        handlers=[AgentStreamsService(docker=streams).handler(),
                  AgentVolumeFilesService(resolver=Resolver(client=client),
                                          storage_mounts=options.storage_mounts).handler()],
        tls_cert=options.listen_cert, tls_key=options.listen_key,
    )
    await server.start()
    engine = DockerDriver(host=options.docker_host)
    async with client:
        agent = Agent(config=options.agent, client=client, engine=engine,
                      inventory=inventory.Inventory(nvml=nvml,
                                                    simulated=bool(options.simulated_gpus)))
        task = asyncio.create_task(agent.run())
        watcher = AgentHealth(agent=agent, engine=engine, servicer=health_servicer)
        watching = asyncio.create_task(watcher.run())
        endpoint_ = None
        if options.metrics_listen:
            metrics_host, metrics_port = endpoint.parse_listen(options.metrics_listen)
            endpoint_ = endpoint.Endpoint(host=metrics_host, port=metrics_port,
                                          healthz=watcher.check, readyz=watcher.check)
            endpoint_.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            watching.cancel()
            if endpoint_ is not None:
                endpoint_.stop()
            await server.stop()
            streams.close()
            await engine.close()
    log.info("dora-agent stopped; its containers keep running and the next start adopts them")


def main(argv: list[str] | None = None) -> None:
    options, level = parse_args(argv)
    logs.configure(level=level, format=options.log_format)
    try:
        asyncio.run(serve(options))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
