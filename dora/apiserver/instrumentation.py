"""A gRPC server interceptor that counts and times every request (``/metrics``).

It wraps the method handler the server found, so it sees the status each call ends
with (an ``abort`` is an exception carrying the code; a stream counts when it
ends). The label is the method's short name (``Resources/Apply``): a handful of
values, never an object's name.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from dora.api import grpcservice
from dora.observability import metrics

_UNIMPLEMENTED = "UNIMPLEMENTED"


def _code_of(context: Any, error: BaseException | None) -> str:
    if isinstance(error, grpc.aio.AbortError) or error is not None:
        code = context.code() if hasattr(context, "code") else None
        if code is not None:
            return str(code.name if isinstance(code, grpc.StatusCode) else code)
        return "UNKNOWN" if not isinstance(error, grpc.aio.AbortError) else "ABORTED"
    code = context.code() if hasattr(context, "code") else None
    if code is None or code == grpc.StatusCode.OK:
        return "OK"
    return str(code.name if isinstance(code, grpc.StatusCode) else code)


def _short(method: str) -> str:
    """``/dora.api.v1.Resources/Apply`` -> ``Resources/Apply``."""
    service, _, name = method.rpartition("/")
    return f"{service.rpartition('.')[2]}/{name}"


if TYPE_CHECKING:  # the stubs make these generic; grpc's classes are not subscriptable
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


class MetricsInterceptor(_Interceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        name: str = details.method
        if handler is None or name.startswith("/grpc."):
            # Health and reflection write their streams through the context (not as
            # generators) and are not Dora's API: left as they are.
            return handler
        method = _short(name)
        wrap = _stream if handler.response_streaming else _unary
        return grpcservice.with_behavior(handler, wrap(_behavior(handler), method))


def _behavior(handler: Handler) -> Callable[..., Any]:
    """The servicer's coroutine (or async generator) the handler calls."""
    behavior: Callable[..., Any] | None = (handler.unary_unary or handler.unary_stream
                                           or handler.stream_unary or handler.stream_stream)
    assert behavior is not None
    return behavior


def _observe(method: str, started: float, context: Any, error: BaseException | None) -> None:
    metrics.REQUESTS.labels(method, _code_of(context, error)).inc()
    metrics.REQUEST_SECONDS.labels(method).observe(time.monotonic() - started)


def _unary(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: Any) -> Any:
        started = time.monotonic()
        try:
            response = await behavior(request, context)
        except BaseException as exc:
            _observe(method, started, context, exc)
            raise
        _observe(method, started, context, None)
        return response

    return wrapper


def _stream(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
        started = time.monotonic()
        error: BaseException | None = None
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            _observe(method, started, context, error)

    return wrapper
