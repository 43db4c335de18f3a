"""The ``Leases`` gRPC service: etcd leases, granted and kept alive through the
apiserver, since nothing but the apiserver talks to etcd.

A holder binds a ``Lease`` object to its lease (``Resources.Apply``) and keeps
the lease alive on one stream; when it dies or loses the network, etcd deletes
the object after the TTL, and watchers (node lifecycle, standby controllers)
see it go.

A lease belongs to whoever was granted it: ``/dora/leaseowners/<id>`` (written
with the grant, bound to the lease itself so etcd drops it with the lease) names
the user and node. Only its owner keeps it alive, revokes it or binds a Lease
object to it: a node's token cannot revoke the controllers' leader lease, nor
another node's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from dora.api import errors, grpcservice
from dora.api.v1 import coordination_pb2
from dora.apiserver.auth.authorizer import Authorizer, Principal
from dora.apiserver.leaseowners import OWNERS, owner_of, owns, require_owner
from dora.apiserver.rpc import abort, caller, unary
from dora.apiserver.storage import Etcd

SERVICE = "dora.api.v1.Leases"
MIN_TTL, MAX_TTL = 2, 3600


class LeasesService:
    def __init__(self, *, etcd: Etcd, authorizer: Authorizer) -> None:
        self.etcd = etcd
        self.authz = authorizer

    async def _authorize(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """Leases are for whoever may hold a Lease object somewhere."""
        principal = caller()
        await self.authz.require_somewhere(principal, "Apply", "Lease")
        return principal

    @unary
    async def Grant(
        self, request: coordination_pb2.GrantLeaseRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> coordination_pb2.GrantLeaseResponse:
        principal = await self._authorize(context)
        if not MIN_TTL <= request.ttl_seconds <= MAX_TTL:
            raise errors.Invalid(f"must be between {MIN_TTL} and {MAX_TTL}", field="ttlSeconds")
        lease_id, ttl = await self.etcd.grant_lease(request.ttl_seconds)
        await self.etcd.put(OWNERS + b"%x" % lease_id, owner_of(principal), lease=lease_id)
        return coordination_pb2.GrantLeaseResponse(lease_id=lease_id, ttl_seconds=ttl)

    async def KeepAlive(
        self, requests: AsyncIterator[coordination_pb2.KeepAliveRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[coordination_pb2.KeepAliveResponse]:
        try:
            principal = await self._authorize(context)
            owned: set[int] = set()
            async for request in requests:
                if request.lease_id not in owned:
                    if not await owns(self.etcd, principal, request.lease_id):
                        # Gone, or never the caller's: either way not theirs to keep.
                        yield coordination_pb2.KeepAliveResponse(
                            lease_id=request.lease_id, ttl_seconds=0)
                        continue
                    owned.add(request.lease_id)
                ttl = await self.etcd.keep_alive(request.lease_id)
                yield coordination_pb2.KeepAliveResponse(
                    lease_id=request.lease_id, ttl_seconds=ttl
                )
        except errors.DoraError as exc:
            await abort(context, exc)

    @unary
    async def Revoke(
        self, request: coordination_pb2.RevokeLeaseRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> coordination_pb2.RevokeLeaseResponse:
        principal = await self._authorize(context)
        await require_owner(self.etcd, principal, request.lease_id)
        await self.etcd.revoke_lease(request.lease_id)
        return coordination_pb2.RevokeLeaseResponse()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(coordination_pb2.DESCRIPTOR.services_by_name["Leases"], self)
