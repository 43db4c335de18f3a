"""The gate in front of every call: who calls is settled before the request body is
read, and how much each caller may have in flight is bounded (Kubernetes' API
Priority and Fairness in miniature).

A gRPC server interceptor runs when a call's headers arrive, before its message
is read or parsed. There:

- a call without a token, or with a token that is unknown, expired or revoked,
  is answered ``UNAUTHENTICATED`` by a handler that never reads the request: its
  bytes never reach Python, so a flood of anonymous 4 MB Applies costs no memory
  that outlives the calls;
- a token not seen in the last second costs an etcd read: at most
  ``unauthenticated`` such lookups run at once, a few more wait briefly
  (``queue``, ``wait``), and beyond that the call is ``RESOURCE_EXHAUSTED``;
- an authenticated caller's unary calls run at most ``per_user`` at once per
  user, the same way. Streams (Watch, KeepAlive, Logs, Exec, file transfers) are
  long-lived and not counted, as Kubernetes exempts watches; their number per
  connection is bounded by the transport (``grpcoptions.MAX_STREAMS``).

Every authenticated unary call gets a request id, which its log lines carry
(``dora.observability.logs.request_id``); one that may change something is recorded in the
audit log when there is one (``audit``), with its outcome and that id.

Health checks and reflection pass without a token. This is the only place a
call is authenticated: the gate puts the caller's ``Principal`` on the call
(``rpc.bind``: a context variable of the call's task) and
the services read it with ``rpc.caller()``. A call that never passed the gate
has no principal and is refused there (``UNAUTHENTICATED``).
"""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from dora.api import errors
from dora.apiserver.audit import READS, AuditLog
from dora.apiserver.auth.authenticator import Authenticator, bearer
from dora.apiserver.auth.authorizer import Principal
from dora.apiserver.rpc import bind
from dora.observability import logs

# Methods anyone may call: health checks, reflection.
OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class Limits:
    # Unary calls of one user in flight at once, and how many more may wait.
    per_user: int = 200
    per_user_queue: int = 2000
    # Token lookups (tokens not seen in the last second) at once, and waiting.
    unauthenticated: int = 64
    unauthenticated_queue: int = 1000
    # The longest a call waits for a slot before RESOURCE_EXHAUSTED.
    wait: float = 5.0


class Limiter:
    """At most ``slots`` holders per key at once; up to ``queue`` more wait, in order,
    at most ``wait`` seconds each; anyone else is refused at once."""

    def __init__(self, *, slots: int, queue: int, wait: float, what: str) -> None:
        self.slots, self.queue, self.wait, self.what = slots, queue, wait, what
        self._held: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    async def acquire(self, key: str) -> None:
        held = self._held.get(key, 0)
        waiting = self._waiting.get(key)
        if held < self.slots and not waiting:
            self._held[key] = held + 1
            return
        if len(waiting or ()) >= self.queue:
            raise self._exhausted(key)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, collections.deque()).append(future)
        try:
            async with asyncio.timeout(self.wait):
                await future  # the slot is handed over by release()
        except TimeoutError:
            if future.done() and not future.cancelled():
                return  # handed over just as the wait ran out: it is ours
            raise self._exhausted(key) from None
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(key)  # handed over as we were cancelled: pass it on
            raise
        finally:
            queue = self._waiting.get(key)
            if queue is not None:
                if future in queue:
                    queue.remove(future)
                if not queue:
                    del self._waiting[key]

    def release(self, key: str) -> None:
        queue = self._waiting.get(key)
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes to it: held stays the same
                return
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def _exhausted(self, key: str) -> errors.Exhausted:
        return errors.Exhausted(
            f"too many calls at once {self.what}{key and f' {key!r}'} (at most {self.slots} "
            f"in flight and {self.queue} waiting); retry with backoff")


def refusal(error: errors.DoraError) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that answers ``error`` without reading the request (a stream
    handler need not read; gRPC discards what it does not)."""
    code, text, trailers = errors.to_status(error)

    async def refuse(requests: AsyncIterator[Any], context: Any) -> None:
        await context.abort(code, text, trailing_metadata=trailers)

    return grpc.stream_unary_rpc_method_handler(refuse, request_deserializer=_unread)


def _unread(data: bytes) -> None:
    return None


def _audit(audit: AuditLog, principal: Principal, method: str, request: Any, response: Any,
           context: Any, request_id: str) -> None:
    code = context.code()
    if response is not None and code in (None, grpc.StatusCode.OK):
        audit.record(principal=principal, method=method, request=request, response=response,
                     code="OK", request_id=request_id)
        return
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    audit.record(principal=principal, method=method, request=request, response=None,
                 code=name, message=context.details() or "", request_id=request_id)


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _Interceptor = grpc.aio.ServerInterceptor


class Gate(_Interceptor):
    def __init__(self, authenticator: Authenticator, limits: Limits | None = None,
                 audit: AuditLog | None = None) -> None:
        self.authn = authenticator
        self.audit = audit
        self.limits = limits or Limits()
        self.users = Limiter(slots=self.limits.per_user, queue=self.limits.per_user_queue,
                             wait=self.limits.wait, what="by user")
        self.lookups = Limiter(slots=self.limits.unauthenticated,
                               queue=self.limits.unauthenticated_queue,
                               wait=self.limits.wait, what="from callers not yet authenticated")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails],
                               Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:  # None too (no such method): the stubs omit it
        if details.method.startswith(OPEN):
            return await continuation(details)  # type: ignore[return-value]
        token = bearer(details.invocation_metadata)
        principal = self.authn.known(token) if token else None
        if principal is None:
            try:
                if not token:
                    raise errors.Unauthenticated(
                        "no token: send 'authorization: Bearer <token>' (doractl: --token "
                        "or a profile)")
                await self.lookups.acquire("")
                try:
                    principal = await self.authn.authenticate_token(token)
                finally:
                    self.lookups.release("")
            except errors.DoraError as exc:
                return refusal(exc)
        # gRPC runs the interceptors in the call's own task, which then runs its
        # handler: what is bound here is that call's, and no other's.
        bind(principal)
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler  # type: ignore[return-value]
        audit = self.audit if details.method not in READS else None
        return self._bounded(handler, principal, details.method, audit)

    def _bounded(self, handler: grpc.RpcMethodHandler[Any, Any], principal: Principal,
                 method: str, audit: AuditLog | None) -> grpc.RpcMethodHandler[Any, Any]:
        behaviour = handler.unary_unary
        assert behaviour is not None
        users, user = self.users, principal.user

        async def bounded(request: Any, context: Any) -> Any:
            response = None
            request_id = secrets.token_hex(8)
            logs.request_id.set(request_id)  # this call's task only
            try:
                try:
                    await users.acquire(user)
                except errors.Exhausted as exc:
                    code, text, trailers = errors.to_status(exc)
                    await context.abort(code, text, trailing_metadata=trailers)
                try:
                    response = await behaviour(request, context)
                    return response
                finally:
                    users.release(user)
            finally:
                if audit is not None:
                    _audit(audit, principal, method, request, response, context, request_id)

        return grpc.unary_unary_rpc_method_handler(
            bounded, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
