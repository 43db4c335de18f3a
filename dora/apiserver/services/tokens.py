"""The ``Tokens`` gRPC service: create, list and revoke tokens; who am I.

Creating a token for anyone, or listing and revoking somebody else's, takes the
``Apply`` verb on ``User`` (an administrator's); everybody may list and revoke
their own. A token made with ``node`` is that node agent's identity: its holder
acts as that node only (``auth.noderestriction``).
"""

from __future__ import annotations

from typing import Any

import grpc

import dora
from dora.api import errors, grpcservice
from dora.api.v1 import tokens_pb2
from dora.apiserver.auth.authorizer import Authorizer, Principal
from dora.apiserver.auth.tokens import TokenStore
from dora.apiserver.rpc import Context, caller, unary

SERVICE = "dora.api.v1.Tokens"


class TokensService:
    def __init__(self, *, tokens: TokenStore, authorizer: Authorizer) -> None:
        self.tokens = tokens
        self.authz = authorizer

    async def _require_admin_unless_self(self, principal: Principal, user: str) -> None:
        if user != principal.user:
            await self.authz.require(principal, "Apply", "User", "", "")

    @unary
    async def Create(
        self, request: tokens_pb2.CreateTokenRequest, context: Context
    ) -> tokens_pb2.CreateTokenResponse:
        principal = caller()
        await self.authz.require(principal, "Apply", "User", "", "")
        if self.authz.user(request.user) is None:
            raise errors.NotFound(f"user {request.user!r} does not exist; apply it first")
        token, info = await self.tokens.create(
            user=request.user, workspace=request.workspace, token_id=request.id,
            ttl_seconds=request.ttl_seconds, node=request.node,
        )
        return tokens_pb2.CreateTokenResponse(info=info, token=token)

    @unary
    async def List(
        self, request: tokens_pb2.ListTokensRequest, context: Context
    ) -> tokens_pb2.ListTokensResponse:
        principal = caller()
        user = request.user
        if not user and self.authz.allows(principal, "Apply", "User", "", ""):
            return tokens_pb2.ListTokensResponse(tokens=await self.tokens.list())
        user = user or principal.user
        await self._require_admin_unless_self(principal, user)
        return tokens_pb2.ListTokensResponse(tokens=await self.tokens.list(user))

    @unary
    async def Revoke(
        self, request: tokens_pb2.RevokeTokenRequest, context: Context
    ) -> tokens_pb2.RevokeTokenResponse:
        principal = caller()
        await self._require_admin_unless_self(principal, request.user)
        await self.tokens.revoke(request.user, request.id)
        return tokens_pb2.RevokeTokenResponse()

    @unary
    async def WhoAmI(
        self, request: tokens_pb2.WhoAmIRequest, context: Context
    ) -> tokens_pb2.WhoAmIResponse:
        principal = caller()
        return tokens_pb2.WhoAmIResponse(
            user=principal.user, token_id=principal.token_id, zone=principal.zone,
            workspace=principal.workspace, node=principal.node,
            server_version=dora.__version__,
        )

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(tokens_pb2.DESCRIPTOR.services_by_name["Tokens"], self)
