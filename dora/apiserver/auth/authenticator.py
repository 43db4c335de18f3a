"""Authentication: the bearer token in the call's metadata names the caller."""

from __future__ import annotations

from typing import Any

import grpc

from dora.api import errors
from dora.apiserver.auth.authorizer import Authorizer, Principal
from dora.apiserver.auth.tokens import TokenStore

_SCHEME = "bearer "


class Authenticator:
    def __init__(self, *, tokens: TokenStore, authorizer: Authorizer) -> None:
        self._tokens = tokens
        self._authorizer = authorizer

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                if value.lower().startswith(_SCHEME):
                    token = value[len(_SCHEME):].strip()
                break
        if not token:
            raise errors.Unauthenticated(
                "no token: send 'authorization: Bearer <token>' (doractl: --token or a profile)"
            )
        info = await self._tokens.lookup(token)
        if info is None:
            raise errors.Unauthenticated("the token is unknown, expired or revoked")
        user = self._authorizer.user(info.user)
        zone = workspace = ""
        if user is not None:
            zone = user.user.spec.defaults.zone
            workspace = user.user.spec.defaults.workspace
        return Principal(
            user=info.user, token_id=info.id, zone=zone, workspace=info.workspace or workspace
        )
