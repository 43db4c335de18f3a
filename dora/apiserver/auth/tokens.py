"""Bearer tokens: created once, shown once, stored as hashes.

``/dora/tokens/<sha256 of the token>`` holds the token's ``TokenInfo`` (user,
default workspace, id, expiry, and the Node it is an agent's identity
for); ``/dora/tokenids/<user>/<id>`` points at that
hash so ``revoke USER ID`` and ``token ls`` need no token. Both keys are written
and deleted together in one transaction. Lookups are cached for a second per
replica; a revoke on this replica drops the cache entry at once (and moves
``revocations``, so what callers derived from lookups is dropped too).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import time
from collections.abc import Callable

from dora.api import errors
from dora.api.v1 import tokens_pb2
from dora.apiserver.storage import Etcd

PREFIX = b"/dora/tokens/"
ID_PREFIX = b"/dora/tokenids/"
_CACHE_SECONDS = 1.0
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, *, etcd: Etcd, now: Callable[[], dt.datetime] = _utcnow) -> None:
        self.etcd = etcd
        self._now = now
        self._cache: dict[str, tuple[float, tokens_pb2.TokenInfo | None]] = {}
        # How many revokes this replica has made.
        self.revocations = 0

    def records(
        self, *, user: str, workspace: str, token_id: str, ttl_seconds: int = 0,
        node: str = "",
    ) -> tuple[str, tokens_pb2.TokenInfo, list[tuple[bytes, bytes]]]:
        """A new token, its info and the keys that store it (for a transaction)."""
        if not user or "/" in user:
            raise errors.Invalid("required: a user name", field="user")
        if not token_id or "/" in token_id:
            raise errors.Invalid("required: a token id without '/'", field="id")
        if ttl_seconds < 0:
            raise errors.Invalid("must be >= 0", field="ttlSeconds")
        if node and not _NAME.fullmatch(node):
            raise errors.Invalid("must be a Node name (letters, digits, '.', '-', '_')",
                                 field="node")
        token = "dora_" + secrets.token_urlsafe(32)
        info = tokens_pb2.TokenInfo(user=user, workspace=workspace, id=token_id, node=node)
        now = self._now()
        info.created.FromDatetime(now)
        if ttl_seconds:
            info.expires.FromDatetime(now + dt.timedelta(seconds=ttl_seconds))
        hashed = digest(token)
        stored = tokens_pb2.StoredToken(info=info).SerializeToString()
        return token, info, [
            (PREFIX + hashed.encode(), stored),
            (_id_key(user, token_id), hashed.encode()),
        ]

    async def create(
        self, *, user: str, workspace: str, token_id: str, ttl_seconds: int = 0,
        node: str = "",
    ) -> tuple[str, tokens_pb2.TokenInfo]:
        token, info, items = self.records(
            user=user, workspace=workspace, token_id=token_id, ttl_seconds=ttl_seconds,
            node=node,
        )
        if not await self.etcd.create_all(items):
            raise errors.AlreadyExists(f"user {user!r} already has a token {token_id!r}")
        return token, info

    async def lookup(self, token: str) -> tokens_pb2.TokenInfo | None:
        """The info of a valid token; None when unknown, revoked or expired."""
        info, _ = await self.lookup_since(token)
        return info

    async def lookup_since(self, token: str) -> tuple[tokens_pb2.TokenInfo | None, float]:
        """``lookup``, and the ``time.monotonic()`` at which etcd said so: what is
        derived from the answer may be kept until a second after that, no longer."""
        hashed = digest(token)
        cached = self._cache.get(hashed)
        if cached is not None and time.monotonic() - cached[0] < _CACHE_SECONDS:
            read_at, info = cached
        else:
            kv = await self.etcd.get(PREFIX + hashed.encode())
            info = tokens_pb2.StoredToken.FromString(kv.value).info if kv else None
            read_at = time.monotonic()
            self._cache[hashed] = (read_at, info)
        if info is not None and self.expired(info):
            return None, read_at
        return info, read_at

    def expired(self, info: tokens_pb2.TokenInfo) -> bool:
        return info.HasField("expires") and (
            info.expires.ToDatetime(tzinfo=dt.UTC) <= self._now())

    async def list(self, user: str = "") -> list[tokens_pb2.TokenInfo]:
        listing = await self.etcd.range(PREFIX)
        infos = [tokens_pb2.StoredToken.FromString(kv.value).info for kv in listing.kvs]
        return sorted(
            (i for i in infos if not user or i.user == user), key=lambda i: (i.user, i.id)
        )

    async def revoke(self, user: str, token_id: str) -> None:
        id_key = _id_key(user, token_id)
        kv = await self.etcd.get(id_key)
        if kv is None:
            raise errors.NotFound(f"user {user!r} has no token {token_id!r}")
        await self.etcd.delete_all([PREFIX + kv.value, id_key])
        self._cache.pop(kv.value.decode(), None)
        self.revocations += 1


def _id_key(user: str, token_id: str) -> bytes:
    return ID_PREFIX + f"{user}/{token_id}".encode()
