"""The ``Resources`` gRPC service: requests in, registry and watch cache calls out.

Nothing here decides what a write means (that is ``registry``) or how watchers
share an etcd watch (``watchcache``); this module translates messages and turns
``errors.DoraError`` into gRPC status codes with field details.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from dora.api import errors, labels
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, resources_pb2
from dora.apiserver.registry import Registry
from dora.apiserver.watchcache import Filter, WatchCache

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
SERVICE = "dora.api.v1.Resources"


def unary(
    method: Callable[[Any, Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[Response]],
) -> Callable[[Any, Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[Response]]:
    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Request, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Response:
        try:
            return await method(self, request, context)
        except errors.DoraError as exc:
            await abort(context, exc)
            raise AssertionError("unreachable") from exc

    return wrapper


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: errors.DoraError) -> None:
    code, message, trailers = errors.to_status(exc)
    await context.abort(code, message, trailing_metadata=trailers)


class ResourcesService:
    def __init__(self, *, registry: Registry, cache: WatchCache,
                 bookmark_every: float = 5.0) -> None:
        self.registry = registry
        self.cache = cache
        self.bookmark_every = bookmark_every

    @unary
    async def Apply(
        self, request: resources_pb2.ApplyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> resources_pb2.ApplyResponse:
        obj, result = await self.registry.apply(
            request.object, dry_run=request.dry_run, create_only=request.create_only
        )
        return resources_pb2.ApplyResponse(object=obj, result=result)

    @unary
    async def Get(
        self, request: resources_pb2.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> object_pb2.Object:
        return await self.registry.get(Ref.from_proto(request.ref))

    @unary
    async def List(
        self, request: resources_pb2.ListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> resources_pb2.ListResponse:
        items, revision, token = await self.registry.list(
            request.kind, zone=request.zone, workspace=request.workspace,
            selector=labels.parse(request.label_selector), limit=request.limit,
            continue_token=request.continue_token,
        )
        return resources_pb2.ListResponse(
            items=items, resource_version=revision, continue_token=token
        )

    @unary
    async def UpdateStatus(
        self,
        request: resources_pb2.UpdateStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> object_pb2.Object:
        return await self.registry.update_status(request.object)

    @unary
    async def Delete(
        self, request: resources_pb2.DeleteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> resources_pb2.DeleteResponse:
        obj = await self.registry.delete(
            Ref.from_proto(request.ref), resource_version=request.resource_version
        )
        return resources_pb2.DeleteResponse(object=obj)

    async def Watch(
        self, request: resources_pb2.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        """Yields serialized ``WatchEvent`` bytes: the server sends them as they are."""
        try:
            cache = self.cache[request.kind]
            watch_filter = Filter(
                zone=request.zone, workspace=request.workspace,
                selector=labels.parse(request.label_selector),
            )
            async for payload in cache.watch(
                resource_version=request.resource_version, filter=watch_filter,
                bookmark_every=self.bookmark_every,
            ):
                yield payload
        except errors.DoraError as exc:
            await abort(context, exc)

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The service's method handlers; Watch passes pre-serialized events through."""
        def unary(method: Any, request: Any, response: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )

        return grpc.method_handlers_generic_handler(SERVICE, {
            "Apply": unary(self.Apply, resources_pb2.ApplyRequest, resources_pb2.ApplyResponse),
            "Get": unary(self.Get, resources_pb2.GetRequest, object_pb2.Object),
            "List": unary(self.List, resources_pb2.ListRequest, resources_pb2.ListResponse),
            "UpdateStatus": unary(self.UpdateStatus, resources_pb2.UpdateStatusRequest,
                                  object_pb2.Object),
            "Delete": unary(self.Delete, resources_pb2.DeleteRequest,
                            resources_pb2.DeleteResponse),
            "Watch": grpc.unary_stream_rpc_method_handler(
                self.Watch, request_deserializer=resources_pb2.WatchRequest.FromString,
                response_serializer=_passthrough,
            ),
        })


def _passthrough(payload: bytes) -> bytes:
    return payload
