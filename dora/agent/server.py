"""The agent's gRPC server on ``--listen``: what apiservers call on this node.

The apiserver reaches an agent at its Node's ``spec.endpoint`` as
kube-apiserver reaches a kubelet, to stream logs, run commands and move volume
data. Those reach into the node's containers, so the server accepts only
apiservers: every call must carry the shared secret (``dora.api.agentauth``)
or is answered ``UNAUTHENTICATED`` before any servicer runs. An agent started
without a secret answers every call that way and says why in its log, rather
than serving anyone who can reach the port.

The server knows nothing of what it serves: it takes a list of
``grpc.GenericRpcHandler`` (each service's ``handler()``), so another service
is added by handing in its handler (see ``dora/agent/README.md``). The standard gRPC
health service is the one call served without the secret (``dora.agent.health``). Long streams
(``logs -f``, an idle shell) must survive quiet networks: keepalive pings are
allowed every 10 s without data, and there is no ``max_connection_age``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2_grpc

from dora.api import agentauth, grpcoptions, grpcservice

log = logging.getLogger(__name__)

SERVER_OPTIONS = grpcoptions.server()
HEALTH_PREFIX = "/grpc.health.v1.Health/"


class _SecretCheck(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every call whose metadata lacks the shared secret."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret

    def _refusal(self, details: grpc.HandlerCallDetails) -> str | None:
        if self._secret is None:
            return ("this agent has no --agent-secret-file, so it accepts no apiserver; "
                    "start it with the secret its apiservers use")
        presented = ""
        for key, value in details.invocation_metadata or ():
            if key == agentauth.METADATA_KEY and isinstance(value, str):
                presented = value
        if not presented:
            return "only apiservers may call the agent: no agent secret in the call"
        if not agentauth.matches(self._secret, presented):
            return "only apiservers may call the agent: the agent secret does not match"
        return None

    async def intercept_service(self, continuation: Any,
                                handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(handler_call_details)
        if handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler  # health tells nothing of the node's containers: open to probes
        refusal = self._refusal(handler_call_details)
        if refusal is None or handler is None:
            return handler
        log.warning("refused %s: %s", handler_call_details.method, refusal)
        return _refusing(handler, refusal)


def _refusing(handler: grpc.RpcMethodHandler[Any, Any], message: str) -> Any:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpcservice.with_behavior(handler, refuse)


class AgentServer:
    """The gRPC server apiservers call; serves the handlers it is given."""

    def __init__(
        self,
        *,
        listen: str,
        secret: str | None,
        handlers: Sequence[grpc.GenericRpcHandler[Any, Any]],
        tls_cert: bytes | None = None,
        tls_key: bytes | None = None,
        health: Any = None,
    ) -> None:
        self.listen = listen
        self._secret = secret
        self._handlers = tuple(handlers)
        # grpc_health's aio HealthServicer, served without the secret; None: no health.
        self._health = health
        self._tls = (tls_key, tls_cert) if tls_cert is not None and tls_key is not None else None
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        if self._secret is None:
            log.error("no --agent-secret-file: every call on %s is refused (UNAUTHENTICATED); "
                      "logs and exec of this node's containers will not work", self.listen)
        server = grpc.aio.server(options=SERVER_OPTIONS,
                                 interceptors=[_SecretCheck(self._secret)])
        server.add_generic_rpc_handlers(self._handlers)
        if self._health is not None:
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self._tls is not None:
            self.port = server.add_secure_port(
                self.listen, grpc.ssl_server_credentials([self._tls])
            )
        else:
            self.port = server.add_insecure_port(self.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        await server.start()
        self._server = server
        log.info("agent streams listening on %s (port %d%s)", self.listen, self.port,
                 ", TLS" if self._tls else "")

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
