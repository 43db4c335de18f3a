"""Authentication: the bearer token in the call's metadata names the caller.

Every call is authenticated. What a token comes to (its ``Principal``) is kept
until the token store's lookup it came from is a second old (as long as the
store keeps that lookup), and only while the token has not expired, no token
was revoked on this replica and the caller's User in the watch cache is the
same object: so a call usually costs a dict lookup, and no revocation or change
of defaults is seen later than before.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from dora.api import errors
from dora.api.v1 import object_pb2, tokens_pb2
from dora.apiserver.auth.authorizer import Authorizer, Principal
from dora.apiserver.auth.tokens import TokenStore, digest

_SCHEME = "bearer "
_KEEP_SECONDS = 1.0
_MAX_KEPT = 10_000


class Authenticator:
    def __init__(self, *, tokens: TokenStore, authorizer: Authorizer) -> None:
        self._tokens = tokens
        self._authorizer = authorizer
        # sha256 of the token (never the token itself) -> (when etcd was read,
        # revocations then, its info, its User then, the principal)
        self._kept: dict[str, tuple[float, int, tokens_pb2.TokenInfo,
                                    object_pb2.Object | None, Principal]] = {}

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
        now = time.monotonic()
        hashed = digest(token)
        kept = self._kept.get(hashed)
        if kept is not None:
            when, revocations, info, user, principal = kept
            if (now - when < _KEEP_SECONDS and revocations == self._tokens.revocations
                    and self._authorizer.user(info.user) is user
                    and not self._tokens.expired(info)):
                return principal
        revocations = self._tokens.revocations
        found, read_at = await self._tokens.lookup_since(token)
        if found is None:
            raise errors.Unauthenticated("the token is unknown, expired or revoked")
        user = self._authorizer.user(found.user)
        zone = workspace = ""
        if user is not None:
            zone = user.user.spec.defaults.zone
            workspace = user.user.spec.defaults.workspace
        principal = Principal(
            user=found.user, token_id=found.id, zone=zone, workspace=found.workspace or workspace,
            node=found.node,
        )
        if len(self._kept) >= _MAX_KEPT:
            self._kept = {t: k for t, k in self._kept.items() if now - k[0] < _KEEP_SECONDS}
        self._kept[hashed] = (read_at, revocations, found, user, principal)
        return principal
