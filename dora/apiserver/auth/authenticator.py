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

from dora.api import errors
from dora.api.v1 import object_pb2, tokens_pb2
from dora.apiserver.auth.authorizer import Authorizer, Principal
from dora.apiserver.auth.tokens import TokenStore, digest

_SCHEME = "bearer "


def bearer(metadata: Any) -> str:
    """The bearer token in a call's metadata; "" when it has none."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            if value.lower().startswith(_SCHEME):
                return value[len(_SCHEME):].strip()
            break
    return ""
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

    def known(self, token: str) -> Principal | None:
        """The principal of ``token`` when it is kept and still good (no etcd read)."""
        kept = self._kept.get(digest(token))
        if kept is None:
            return None
        when, revocations, info, user, principal = kept
        if (time.monotonic() - when < _KEEP_SECONDS and revocations == self._tokens.revocations
                and self._authorizer.user(info.user) is user
                and not self._tokens.expired(info)):
            return principal
        return None

    async def authenticate_token(self, token: str) -> Principal:
        if not token:
            raise errors.Unauthenticated(
                "no token: send 'authorization: Bearer <token>' (doractl: --token or a profile)"
            )
        principal = self.known(token)
        if principal is not None:
            return principal
        now = time.monotonic()
        hashed = digest(token)
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
