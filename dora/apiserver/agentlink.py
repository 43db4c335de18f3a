"""The apiserver's way to a node agent: resolve the node, one channel per endpoint.

kube-apiserver reaches a kubelet the same way. Everything is resolved here,
server-side, from stored objects: the Node named by a Container's
``spec.nodeName`` gives ``spec.endpoint`` (``host:port``, ``http://host:port``,
or ``https://host:port`` for TLS, verified with ``--agent-ca`` or the system
roots; seed 004 writes ``https://10.10.10.41:3001``). Nothing a client sends
ever picks the node or the endpoint.

Every call carries the shared agent secret (``dora.api.agentauth``) in its
metadata: use ``metadata()``. Channels are cached per endpoint (with keepalive,
so an idle ``logs -f`` or shell survives quiet networks) and nothing else is
kept, so any apiserver replica can serve any node.

Other services reuse it: ``channel_for_node(zone=, node=)`` plus
``metadata()`` is all a stub needs; ``rpc_error`` turns a failed agent call
into a user-facing ``errors.DoraError`` naming the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import grpc.aio

from dora.api import agentauth, errors, grpcoptions
from dora.api.objects import Ref
from dora.apiserver.registry import Registry
from dora.apiserver.rpc import Context, abort

log = logging.getLogger(__name__)

DEFAULT_PORT = 3001

CHANNEL_OPTIONS = grpcoptions.channel()



class FailedPrecondition(errors.DoraError):
    """The object is not in a state the call needs (a Container not running yet)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AgentFailure(errors.DoraError):
    """The agent refused the apiserver or failed: a cluster problem, not the caller's."""

    code = grpc.StatusCode.INTERNAL


@dataclass(frozen=True)
class Endpoint:
    """Where a node's agent listens: a gRPC target and whether to speak TLS."""

    target: str
    tls: bool

    def __str__(self) -> str:
        return ("https://" if self.tls else "") + self.target


def parse_endpoint(value: str, *, field: str = "spec.endpoint") -> Endpoint:
    """``host:port``, ``http://host:port`` or ``https://host:port`` (port 3001 if none)."""
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    scheme = scheme.lower()
    if scheme not in ("", "http", "https", "grpc", "grpcs"):
        raise errors.Invalid(f"scheme {scheme!r} is not http or https", field=field)
    rest = rest.rstrip("/")
    if not rest or "/" in rest:
        raise errors.Invalid(f"{value!r} is not HOST:PORT or http(s)://HOST:PORT", field=field)
    if rest.startswith("["):  # [IPv6]:port
        bracket = rest.find("]")
        host, port = rest[:bracket + 1], rest[bracket + 1:].removeprefix(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    elif ":" in rest:  # a bare IPv6 address
        host, port = f"[{rest}]", ""
    else:
        host, port = rest, ""
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise errors.Invalid(f"port {port!r} of {value!r} is not a port number", field=field)
    if not host:
        raise errors.Invalid(f"{value!r} names no host", field=field)
    return Endpoint(target=f"{host}:{port or DEFAULT_PORT}", tls=scheme in ("https", "grpcs"))


class AgentLink:
    """Channels to node agents, resolved from Node objects."""

    def __init__(self, *, registry: Registry, secret: str | None,
                 ca: bytes | None = None) -> None:
        self._registry = registry
        self._secret = secret
        self._ca = ca
        self._channels: dict[Endpoint, grpc.aio.Channel] = {}
        self._lock = asyncio.Lock()

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata every agent call must carry."""
        if self._secret is None:
            raise AgentFailure(
                "this apiserver has no --agent-secret-file, so it cannot reach node agents; "
                "ask an administrator to start it with the agents' secret"
            )
        return ((agentauth.METADATA_KEY, self._secret),)

    async def endpoint_of(self, *, zone: str, node: str) -> Endpoint:
        """The endpoint the stored Node declares (read from etcd, not a cache)."""
        try:
            obj = await self._registry.get(Ref("Node", zone, "", node))
        except errors.NotFound:
            raise FailedPrecondition(
                f"node {node!r} is not declared in zone {zone!r}"
            ) from None
        endpoint = obj.node.spec.endpoint
        if not endpoint:
            raise FailedPrecondition(
                f"node {zone}/{node} declares no spec.endpoint, so its agent cannot be reached"
            )
        try:
            return parse_endpoint(endpoint)
        except errors.Invalid as exc:
            raise FailedPrecondition(f"node {zone}/{node}: {exc.message}") from None

    async def channel_for_node(self, *, zone: str, node: str) -> grpc.aio.Channel:
        """A (shared, cached) channel to ``node``'s agent; send ``metadata()`` with calls."""
        self.metadata()  # fail before dialling when no secret is configured
        return await self.channel_for(await self.endpoint_of(zone=zone, node=node))

    async def channel_for(self, endpoint: Endpoint) -> grpc.aio.Channel:
        async with self._lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                if endpoint.tls:
                    credentials = grpc.ssl_channel_credentials(root_certificates=self._ca)
                    channel = grpc.aio.secure_channel(endpoint.target, credentials,
                                                      options=CHANNEL_OPTIONS)
                else:
                    channel = grpc.aio.insecure_channel(endpoint.target, options=CHANNEL_OPTIONS)
                self._channels[endpoint] = channel
                log.debug("new channel to agent %s", endpoint)
            return channel

    async def close(self) -> None:
        async with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(None)


@dataclass
class Relay:
    """Where a client's call is being relayed: the node, once one is chosen."""

    node: str = ""


@contextlib.asynccontextmanager
async def relaying(context: Context) -> AsyncIterator[Relay]:
    """Around a client's call that the apiserver relays to a node's agent: a
    ``DoraError``, or the agent's own failure (``rpc_error``, named after
    ``Relay.node``), ends the client's call with its status."""
    relay = Relay()
    try:
        yield relay
    except grpc.aio.AioRpcError as exc:
        await abort(context, rpc_error(exc, node=relay.node))
    except errors.DoraError as exc:
        await abort(context, exc)


def rpc_error(exc: grpc.aio.AioRpcError, *, node: str) -> errors.DoraError:
    """A failed agent call as the user should see it: which node, and what went wrong."""
    code, details = exc.code(), exc.details() or exc.code().name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.Unavailable(f"the agent of node {node!r} is unreachable: {details}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AgentFailure(f"the agent of node {node!r} refused this apiserver: {details} "
                            "(apiserver and agent need the same --agent-secret-file)")
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(f"node {node!r}: {details}")
    if code == grpc.StatusCode.CANCELLED:
        return errors.Unavailable(f"the stream from node {node!r} was cancelled: {details}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(f"node {node!r}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.Invalid(details)
    return AgentFailure(f"the agent of node {node!r} failed: {details}")
