"""The apiserver process: etcd, the watch cache and the gRPC server, started and
stopped together.

At the first start on an empty etcd it creates the admin user and prints the
admin token once (``auth.bootstrap``). Its gRPC health says SERVING only while
etcd answers (a read every ``health_every`` seconds): a load balancer or probe
moves clients to a replica that can serve them. Long streams (Watch, lease keep-alives)
must survive idle networks: the server lets clients ping every 10 s without
data and pings them itself; there is deliberately no ``max_connection_age``,
which would cut watches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dora.api import grpcoptions
from dora.api.errors import DoraError
from dora.api.v1 import (
    coordination_pb2,
    devices_pb2,
    resources_pb2,
    streams_pb2,
    tokens_pb2,
    volumes_pb2,
)
from dora.apiserver import admission
from dora.apiserver.admission import DEFAULT_LIMITS
from dora.apiserver.admission import Limits as Bounds
from dora.apiserver.agentlink import AgentLink
from dora.apiserver.audit import AuditLog
from dora.apiserver.auth.authenticator import Authenticator
from dora.apiserver.auth.authorizer import Authorizer
from dora.apiserver.auth.bootstrap import bootstrap
from dora.apiserver.auth.tokens import TokenStore
from dora.apiserver.gate import Gate, Limits
from dora.apiserver.instrumentation import MetricsInterceptor
from dora.apiserver.memory import Trimmer
from dora.apiserver.registry import Registry, Scope
from dora.apiserver.services.devices import DevicesService
from dora.apiserver.services.leases import LeasesService
from dora.apiserver.services.pausing import PausingService
from dora.apiserver.services.resources import SERVICE, ResourcesService
from dora.apiserver.services.streams import StreamsService
from dora.apiserver.services.tokens import TokensService
from dora.apiserver.services.volumefiles import VolumeFilesService
from dora.apiserver.services.workspaces import WorkspacesService
from dora.apiserver.storage import TLS, Etcd
from dora.apiserver.watchcache import WatchCache
from dora.observability import endpoint

log = logging.getLogger(__name__)

SERVER_OPTIONS = grpcoptions.server(max_send=64 * grpcoptions.MiB)



@dataclass
class Config:
    etcd_endpoints: list[str]
    listen: str = "127.0.0.1:3000"
    scope: Scope = field(default_factory=Scope)
    etcd_tls: TLS | None = None
    # PEM certificate chain and key: serve TLS instead of plain gRPC.
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    admin_token_file: Path | None = None
    watch_window: int = 10_000
    bookmark_every: float = 5.0
    progress_every: float = 1.0
    # The secret node agents accept (--agent-secret-file); None: logs/exec unavailable.
    agent_secret: str | None = None
    # CA bundle for agents whose Node endpoint is https:// (None: the system roots).
    agent_ca: bytes | None = None
    # HOST:PORT of /metrics, /healthz and /readyz (--metrics-listen); "" is off, and
    # requests are then neither counted nor timed.
    metrics_listen: str = ""
    # Calls in flight per user and token lookups at once (``gate``).
    limits: Limits = field(default_factory=Limits)
    # What one object may ask for, and how many a workspace holds (``admission.limits``).
    bounds: Bounds = DEFAULT_LIMITS
    # How often to look whether freed memory should go back to the system (``memory``).
    trim_every: float = 5.0
    # Where to append the audit log of mutating calls (``audit``); None: no audit log.
    audit_log: Path | None = None
    # How often health asks etcd, and how long an answer may take.
    health_every: float = 1.0
    health_timeout: float = 2.0


class APIServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.etcd = Etcd(config.etcd_endpoints, tls=config.etcd_tls)
        self.cache = WatchCache(etcd=self.etcd, window=config.watch_window,
                                progress_every=config.progress_every)
        self.registry = Registry(
            etcd=self.etcd, scope=config.scope,
            cached=lambda ref, key: self.cache[ref.kind].get(key),
            admit=admission.admitter(config.bounds),
        )
        self.tokens = TokenStore(etcd=self.etcd)
        self.authorizer = Authorizer(cache=self.cache, registry=self.registry)
        self.authenticator = Authenticator(tokens=self.tokens, authorizer=self.authorizer)
        self.agents = AgentLink(registry=self.registry, secret=config.agent_secret,
                                ca=config.agent_ca)
        self._endpoint: endpoint.Endpoint | None = None
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # stubs lack aio
        self._server: grpc.aio.Server | None = None
        self.trimmer = Trimmer(every=config.trim_every)
        self._trimming: asyncio.Task[None] | None = None
        self._probing: asyncio.Task[None] | None = None
        self.serving = False
        self.port = 0
        # Set only by the start that initialised the cluster.
        self.admin_token: str | None = None

    async def start(self) -> None:
        await self.etcd.connect()
        await self.etcd.wait_ready()
        self.admin_token = await bootstrap(registry=self.registry, tokens=self.tokens)
        if self.admin_token is not None:
            self._announce_admin_token(self.admin_token)
        await self.cache.start()
        authn, authz = self.authenticator, self.authorizer
        self.audit = AuditLog(self.config.audit_log) if self.config.audit_log else None
        self.gate = Gate(authn, self.config.limits, audit=self.audit)
        # Outermost first: the metrics see every call, the gate's refusals too.
        server = grpc.aio.server(
            options=SERVER_OPTIONS,
            interceptors=([MetricsInterceptor()] if self.config.metrics_listen else [])
            + [self.gate])
        resources = ResourcesService(registry=self.registry, cache=self.cache,
                                     authorizer=authz,
                                     bookmark_every=self.config.bookmark_every,
                                     limits=self.config.bounds)
        # The busiest service: registered methods are matched without a generic lookup.
        server.add_registered_method_handlers(  # type: ignore[attr-defined]  # stubs lack it
            SERVICE, resources.methods())
        server.add_generic_rpc_handlers((
            LeasesService(etcd=self.etcd, authorizer=authz).handler(),
            TokensService(tokens=self.tokens, authorizer=authz).handler(),
            WorkspacesService(registry=self.registry, authorizer=authz).handler(),
            DevicesService(registry=self.registry, cache=self.cache, authorizer=authz).handler(),
            PausingService(registry=self.registry, authorizer=authz).handler(),
            StreamsService(registry=self.registry, link=self.agents, authorizer=authz).handler(),
            VolumeFilesService(registry=self.registry, cache=self.cache, link=self.agents,
                               authorizer=authz).handler(),
        ))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                resources_pb2.DESCRIPTOR.services_by_name["Resources"].full_name,
                coordination_pb2.DESCRIPTOR.services_by_name["Leases"].full_name,
                tokens_pb2.DESCRIPTOR.services_by_name["Tokens"].full_name,
                tokens_pb2.DESCRIPTOR.services_by_name["Workspaces"].full_name,
                devices_pb2.DESCRIPTOR.services_by_name["Devices"].full_name,
                streams_pb2.DESCRIPTOR.services_by_name["Streams"].full_name,
                volumes_pb2.DESCRIPTOR.services_by_name["VolumeFiles"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        if self.config.tls_cert is not None and self.config.tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(self.config.tls_key, self.config.tls_cert)]
            )
            self.port = server.add_secure_port(self.config.listen, credentials)
        else:
            self.port = server.add_insecure_port(self.config.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        await server.start()
        self._server = server
        self._trimming = asyncio.create_task(self.trimmer.run(), name="trim-memory")
        await self._set_serving(True)
        self._probing = asyncio.create_task(self._probe_etcd(), name="health-etcd")
        if self.config.metrics_listen:
            host, port = endpoint.parse_listen(self.config.metrics_listen)
            self._endpoint = endpoint.Endpoint(host=host, port=port, healthz=self._healthz,
                                               readyz=self._healthz)
            self._endpoint.start()
            log.info("metrics and health on http://%s:%d/metrics", host, self._endpoint.port)
        log.info("dora-apiserver listening on %s (port %d)", self.config.listen, self.port)

    def _healthz(self) -> tuple[bool, str]:
        """/healthz and /readyz: what gRPC health says (SERVING while etcd answers)."""
        return (True, "serving") if self.serving else (False, "etcd does not answer")

    async def _set_serving(self, serving: bool) -> None:
        self.serving = serving
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in ("", SERVICE):
            await self.health.set(service, status)

    async def _probe_etcd(self) -> None:
        """Health follows etcd: NOT_SERVING from the first read that fails, SERVING
        again from the first that succeeds."""
        while True:
            await asyncio.sleep(self.config.health_every)
            try:
                async with asyncio.timeout(self.config.health_timeout):
                    await self.etcd.revision()
                reachable = True
            except (DoraError, TimeoutError) as exc:
                reachable = False
                reason = str(exc) or "no answer in time"
            if reachable != self.serving:
                if reachable:
                    log.info("etcd answers again: health SERVING")
                else:
                    log.warning("etcd does not answer (%s): health NOT_SERVING", reason)
                await self._set_serving(reachable)

    def _announce_admin_token(self, token: str) -> None:
        """The one time the admin token exists in clear: into the 0600 file when one is
        given (the log then names the file, never the token: logs are read by many),
        else onto this process's terminal, outside the log."""
        path = self.config.admin_token_file
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(token + "\n")
            log.warning("first start: created user admin; its token is in %s (mode 0600)",
                        path)
            return
        log.warning("first start: created user admin; its token follows on stderr, once")
        sys.stderr.write(f"\nadmin token (shown only this once):\n\n    {token}\n\n")
        sys.stderr.flush()

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def stop(self, grace: float = 2.0) -> None:
        for task in (self._trimming, self._probing):
            if task is not None:
                task.cancel()
        await self.health.enter_graceful_shutdown()
        if self._endpoint is not None:
            self._endpoint.stop()
        if self._server is not None:
            await self._server.stop(grace)
        await self.agents.close()
        await self.cache.stop()
        await self.etcd.close()
        if self.audit is not None:
            self.audit.close()
