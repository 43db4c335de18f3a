"""The etcd storage: the only module that imports ``aetcd``.

``aetcd`` is the client library; this module wraps it in the few typed
operations the apiserver needs and adds what it lacks:

- several endpoints: a gRPC target list (``ipv4:a:2379,b:2379``) so the channel
  fails over between members;
- TLS to etcd (CA, client certificate and key);
- conditional writes as single transactions (``put_if``/``delete_if``) that
  report, on failure, what the key holds now and which required keys are missing;
- a watch that resumes by itself after a dropped stream from the revision after
  the last one it delivered, and raises ``errors.Gone`` once etcd has compacted
  that revision away.

Keys and values are bytes; what they mean is the registry's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aetcd
import grpc
from aetcd import rpc

from dora.api import errors
from dora.observability import metrics

log = logging.getLogger(__name__)

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_CHANNEL_OPTIONS = {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.lb_policy_name": "pick_first",
}


@dataclass(frozen=True)
class TLS:
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class KV:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True, slots=True)
class Range:
    kvs: list[KV]
    revision: int
    more: bool


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of a conditional write: on failure, what stands in the way."""

    succeeded: bool
    revision: int
    current: KV | None = None
    missing: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    key: bytes
    deleted: bool
    kv: KV
    prev: KV | None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events of one or more revisions, or none: then ``revision`` is a progress mark."""

    revision: int
    events: list[Event] = field(default_factory=list)


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix``."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def grpc_target(endpoints: Sequence[str]) -> str:
    """A gRPC target for a list of ``host:port`` (or ``http://host:port``) endpoints."""
    addresses: list[tuple[str, int]] = []
    for endpoint in endpoints:
        host, _, port = endpoint.split("://")[-1].rstrip("/").rpartition(":")
        if not host or not port.isdigit():
            raise errors.Invalid(f"bad etcd endpoint {endpoint!r}; want host:port")
        addresses.append((host.strip("[]"), int(port)))
    if len(addresses) == 1:
        return f"{addresses[0][0]}:{addresses[0][1]}"
    resolved: list[str] = []
    for host, number in addresses:
        try:
            ipaddress.ip_address(host)
            resolved.append(f"{host}:{number}")
        except ValueError:
            info = socket.getaddrinfo(host, number, socket.AF_INET, socket.SOCK_STREAM)
            resolved.extend(f"{addr[4][0]}:{number}" for addr in info[:1])
    return "ipv4:" + ",".join(resolved)


class _Client(aetcd.Client):  # type: ignore[misc]
    """aetcd's client on a channel we build: a target list, and TLS when given."""

    def __init__(self, *, target: str, tls: TLS | None, timeout: float | None) -> None:
        super().__init__(timeout=timeout, options=_CHANNEL_OPTIONS)
        self._target = target
        self._tls = tls

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._tls is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self._tls.ca,
                private_key=self._tls.key,
                certificate_chain=self._tls.cert,
            )
            self.channel = grpc.aio.secure_channel(
                self._target, credentials, options=list(_CHANNEL_OPTIONS.items())
            )
        else:
            self.channel = grpc.aio.insecure_channel(
                self._target, options=list(_CHANNEL_OPTIONS.items())
            )
        self.kvstub = rpc.KVStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self._watcher = aetcd.watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout)
        self._connected.set()


class Etcd:
    """A connection to an etcd cluster, with the operations the apiserver uses."""

    def __init__(
        self, endpoints: Sequence[str], *, tls: TLS | None = None, timeout: float = 10.0
    ) -> None:
        self._client = _Client(target=grpc_target(endpoints), tls=tls, timeout=timeout)
        self._timeout = timeout

    async def connect(self) -> None:
        await self._client.connect()

    async def close(self) -> None:
        await self._client.close()

    @property
    def _kv(self) -> Any:
        return self._client.kvstub

    async def wait_ready(self, *, within: float = 30.0) -> int:
        """Wait until etcd answers; returns its current revision."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                return await self.revision()
            except errors.Unavailable:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def revision(self) -> int:
        """etcd's current revision (a one-key range read)."""
        response = await self._call(self._kv.Range, rpc.RangeRequest(key=b"\0", count_only=True))
        return int(response.header.revision)

    async def check_revision(self, revision: int) -> None:
        """Raise ``errors.Gone`` once etcd has compacted ``revision`` away (a count of
        one key at it: what a page read at that revision would meet first)."""
        await self._call(self._kv.Range,
                         rpc.RangeRequest(key=b"\0", count_only=True, revision=revision))

    async def get(self, key: bytes) -> KV | None:
        response = await self._call(self._kv.Range, rpc.RangeRequest(key=key))
        return _kv(response.kvs[0]) if response.kvs else None

    async def get_many(self, keys: Sequence[bytes]) -> list[KV | None]:
        """Several keys in one round trip (a transaction of ranges)."""
        request = rpc.TxnRequest(
            success=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k)) for k in keys]
        )
        response = await self._call(self._kv.Txn, request)
        return [
            _kv(r.response_range.kvs[0]) if r.response_range.kvs else None
            for r in response.responses
        ]

    async def range(
        self, prefix: bytes, *, start: bytes | None = None, limit: int = 0, revision: int = 0
    ) -> Range:
        """Keys under ``prefix`` from ``start`` (inclusive), at ``revision`` (0: now)."""
        request = rpc.RangeRequest(
            key=start or prefix, range_end=prefix_end(prefix), limit=limit, revision=revision
        )
        response = await self._call(self._kv.Range, request)
        return Range(
            kvs=[_kv(kv) for kv in response.kvs],
            revision=int(response.header.revision),
            more=bool(response.more),
        )

    async def put_if(
        self,
        key: bytes,
        value: bytes,
        *,
        mod_revision: int,
        requires: Sequence[bytes] = (),
        lease: int = 0,
    ) -> WriteResult:
        """Write ``key`` if it is at ``mod_revision`` (0: if it does not exist) and
        every key in ``requires`` exists, in one transaction."""
        # Filled in place: building the parts and passing them to constructors copies
        # each (the value too) once more, on the path of every write.
        request = rpc.TxnRequest()
        _add_compare(request, key, mod_revision)
        for k in requires:
            compare = request.compare.add()
            compare.key, compare.target, compare.result = k, _CREATE, _GREATER
        put = request.success.add().request_put
        put.key, put.value, put.lease = key, value, lease
        return await self._txn(request, key, requires)

    async def create_all(self, items: Sequence[tuple[bytes, bytes]]) -> bool:
        """Write every key, in one transaction, if none of them exists yet."""
        compare = [_compare_key(key, 0) for key, _ in items]
        puts = [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v)) for k, v in items]
        response = await self._call(self._kv.Txn, rpc.TxnRequest(compare=compare, success=puts))
        return bool(response.succeeded)

    async def put_all_if(
        self, items: Sequence[tuple[bytes, bytes, int]], *, requires: Sequence[bytes] = ()
    ) -> bool:
        """Write every ``(key, value, mod_revision)`` in one transaction, if each key is
        at its ``mod_revision`` (0: does not exist yet) and every key of ``requires``
        exists; otherwise write nothing."""
        request = rpc.TxnRequest()
        for key, value, mod_revision in items:
            _add_compare(request, key, mod_revision)
            put = request.success.add().request_put
            put.key, put.value = key, value
        for k in requires:
            compare = request.compare.add()
            compare.key, compare.target, compare.result = k, _CREATE, _GREATER
        response = await self._call(self._kv.Txn, request)
        return bool(response.succeeded)

    async def put_all_unless(self, guard: bytes, items: Sequence[tuple[bytes, bytes]]) -> bool:
        """Write every key, in one transaction, unless ``guard`` exists."""
        puts = [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v)) for k, v in items]
        request = rpc.TxnRequest(compare=[_compare_key(guard, 0)], success=puts)
        response = await self._call(self._kv.Txn, request)
        return bool(response.succeeded)

    async def delete_all(self, keys: Sequence[bytes]) -> int:
        """Delete every key in one transaction."""
        deletes = [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k)) for k in keys]
        response = await self._call(self._kv.Txn, rpc.TxnRequest(success=deletes))
        return int(response.header.revision)

    async def delete_if(self, key: bytes, *, mod_revision: int) -> WriteResult:
        request = rpc.TxnRequest()
        _add_compare(request, key, mod_revision)
        request.success.add().request_delete_range.key = key
        return await self._txn(request, key, ())

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        response = await self._call(
            self._kv.Put, rpc.PutRequest(key=key, value=value, lease=lease)
        )
        return int(response.header.revision)

    async def delete(self, key: bytes) -> int:
        response = await self._call(self._kv.DeleteRange, rpc.DeleteRangeRequest(key=key))
        return int(response.header.revision)

    async def delete_prefix(self, prefix: bytes) -> int:
        response = await self._call(
            self._kv.DeleteRange,
            rpc.DeleteRangeRequest(key=prefix, range_end=prefix_end(prefix)),
        )
        return int(response.header.revision)

    async def compact(self, revision: int) -> None:
        await self._call(
            self._kv.Compact, rpc.CompactionRequest(revision=revision, physical=True)
        )

    async def _txn(self, request: Any, key: bytes, requires: Sequence[bytes]) -> WriteResult:
        """Run ``request`` (its compares and success ops set); on failure it reads ``key``
        and ``requires``."""
        for k in (key, *requires):
            request.failure.add().request_range.key = k
        response = await self._call(self._kv.Txn, request)
        revision = int(response.header.revision)
        if response.succeeded:
            return WriteResult(True, revision)
        ranges = [r.response_range for r in response.responses]
        current = _kv(ranges[0].kvs[0]) if ranges[0].kvs else None
        missing = tuple(k for k, r in zip(requires, ranges[1:], strict=True) if not r.kvs)
        return WriteResult(False, revision, current, missing)

    async def _call(self, method: Any, request: Any) -> Any:
        await self._client.connect()
        started = time.monotonic()
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        finally:
            metrics.ETCD_SECONDS.labels(_method_name(method)).observe(
                time.monotonic() - started)

    async def watch(
        self, prefix: bytes, *, start_revision: int, progress_every: float | None = None,
        progress_now: asyncio.Event | None = None,
    ) -> AsyncIterator[WatchBatch]:
        """Every change under ``prefix`` from ``start_revision`` (inclusive), in order.

        A dropped stream is re-established from the revision after the last one
        delivered, so callers see no gap and no duplicate. With ``progress_every``
        the stream asks etcd for a progress mark at that interval: an empty batch
        whose revision the caller has now seen everything up to, even when nothing
        under the prefix changed; and at once whenever ``progress_now`` is set (a
        read that waits for the caller to reach etcd's current revision).
        """
        next_revision = start_revision
        backoff = 0.1
        while True:
            try:
                async for batch in self._watch_once(prefix, next_revision, progress_every,
                                                    progress_now):
                    backoff = 0.1
                    if batch.events:
                        next_revision = batch.events[-1].kv.mod_revision + 1
                    else:
                        next_revision = max(next_revision, batch.revision + 1)
                    yield batch
            except errors.Unavailable as exc:
                log.warning("etcd watch on %r dropped (%s); resuming at %d", prefix, exc,
                            next_revision)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _watch_once(
        self, prefix: bytes, start_revision: int, progress_every: float | None,
        progress_now: asyncio.Event | None,
    ) -> AsyncIterator[WatchBatch]:
        await self._client.connect()
        requests: asyncio.Queue[Any] = asyncio.Queue()
        create = rpc.WatchCreateRequest(
            key=prefix, range_end=prefix_end(prefix), start_revision=start_revision,
            prev_kv=True, progress_notify=progress_every is not None,
        )
        await requests.put(rpc.WatchRequest(create_request=create))

        async def request_stream() -> AsyncIterator[Any]:
            while True:
                yield await requests.get()

        async def ask_progress(interval: float) -> None:
            while True:
                if progress_now is None:
                    await asyncio.sleep(interval)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(interval):
                            await progress_now.wait()
                    progress_now.clear()  # the requests made meanwhile: one mark answers all
                await requests.put(rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))

        stub = rpc.WatchStub(self._client.channel)
        call = stub.Watch(request_stream())
        ticker = (
            asyncio.create_task(ask_progress(progress_every)) if progress_every else None
        )
        try:
            async for response in call:
                if response.compact_revision:
                    raise errors.Gone(
                        f"revision {start_revision} was compacted "
                        f"(oldest kept: {response.compact_revision})"
                    )
                if response.canceled:
                    raise errors.Unavailable(f"etcd canceled the watch: {response.cancel_reason}")
                if response.created and not response.events:
                    continue
                events = [
                    Event(
                        key=e.kv.key,
                        deleted=e.type == rpc.Event.DELETE,
                        kv=_kv(e.kv),
                        prev=_kv(e.prev_kv) if e.HasField("prev_kv") else None,
                    )
                    for e in response.events
                ]
                yield WatchBatch(revision=int(response.header.revision), events=events)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        finally:
            if ticker is not None:
                ticker.cancel()
            call.cancel()
        raise errors.Unavailable("etcd closed the watch stream")

    # Leases, for node liveness and leader election.

    async def grant_lease(self, ttl: int) -> tuple[int, int]:
        response = await self._call(self._client.leasestub.LeaseGrant,
                                    rpc.LeaseGrantRequest(TTL=ttl))
        return int(response.ID), int(response.TTL)

    async def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease once; returns the remaining TTL (0: the lease is gone)."""
        await self._client.connect()
        try:
            async for reply in self._client.leasestub.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=self._timeout
            ):
                return int(reply.TTL)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from exc
        return 0

    async def revoke_lease(self, lease_id: int) -> None:
        with contextlib.suppress(errors.NotFound):
            await self._call(self._client.leasestub.LeaseRevoke,
                             rpc.LeaseRevokeRequest(ID=lease_id))


_CREATE, _MOD = rpc.Compare.CREATE, rpc.Compare.MOD
_EQUAL, _GREATER = rpc.Compare.EQUAL, rpc.Compare.GREATER


def _method_name(method: Any) -> str:
    """``Txn``, ``Range``...: the etcd method a bound stub callable calls."""
    name = getattr(method, "_method", b"")
    text = name.decode() if isinstance(name, bytes) else str(name)
    return text.rpartition("/")[2] or "call"


def _add_compare(request: Any, key: bytes, mod_revision: int) -> None:
    """``_compare_key`` added to ``request.compare`` in place."""
    compare = request.compare.add()
    compare.key, compare.result = key, _EQUAL
    if mod_revision == 0:
        compare.target, compare.create_revision = _CREATE, 0
    else:
        compare.target, compare.mod_revision = _MOD, mod_revision


def _compare_key(key: bytes, mod_revision: int) -> Any:
    if mod_revision == 0:
        return rpc.Compare(
            key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
        )
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=mod_revision
    )


def _kv(kv: Any) -> KV:
    return KV(
        key=kv.key, value=kv.value, mod_revision=int(kv.mod_revision),
        create_revision=int(kv.create_revision),
    )


def _error(exc: grpc.aio.AioRpcError) -> errors.DoraError:
    code = exc.code()
    detail = exc.details() or code.name
    if code in _RETRYABLE:
        return errors.Unavailable(f"etcd unavailable: {detail}")
    if code == grpc.StatusCode.OUT_OF_RANGE or "compacted" in detail:
        return errors.Gone(f"etcd: {detail}")
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(f"etcd: {detail}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.Invalid(f"etcd rejected the request: {detail}")
    return errors.DoraError(f"etcd error {code.name}: {detail}")
