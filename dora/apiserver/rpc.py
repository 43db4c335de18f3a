"""The gRPC plumbing every apiserver service shares: the call's context type, turning
``errors.DoraError`` into a gRPC status (``unary``, ``abort``), and who is calling
(``principal``).

Who calls is settled once per call, before its request is read, by the gate
(``dora.apiserver.gate``, a server interceptor): it authenticates the bearer
token and puts the ``Principal`` on the call (``bind``); a service reads it with
``caller()`` and never authenticates again. A call that reached a service
without passing the gate has no principal, and ``caller()`` refuses it
(``UNAUTHENTICATED``): an unguarded service fails closed.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from dora.api import errors
from dora.apiserver.auth.authorizer import Principal

Request = TypeVar("Request")
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]

# The caller of the call this task serves (each gRPC call runs in a task of its own).
_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "dora_principal", default=None)


def bind(principal: Principal) -> None:
    """Make ``principal`` the caller of the call this task serves (the gate's job)."""
    _principal.set(principal)


def caller() -> Principal:
    """The authenticated caller of this call, as the gate found it."""
    found = _principal.get()
    if found is None:
        raise errors.Unauthenticated(
            "no token: send 'authorization: Bearer <token>' (doractl: --token or a profile)")
    return found


def unary(
    method: Callable[[Any, Request, Context], Awaitable[Response]],
) -> Callable[[Any, Request, Context], Awaitable[Response]]:
    """A unary method whose ``errors.DoraError`` becomes the call's gRPC status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Request, context: Context) -> Response:
        try:
            return await method(self, request, context)
        except errors.DoraError as exc:
            await abort(context, exc)
            raise AssertionError("unreachable") from exc

    return wrapper


async def abort(context: Context, exc: errors.DoraError) -> None:
    """End the call with ``exc``'s gRPC status, its field violations in the trailers."""
    code, message, trailers = errors.to_status(exc)
    await context.abort(code, message, trailing_metadata=trailers)
