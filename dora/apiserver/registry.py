"""The registry: Kubernetes' object semantics on top of etcd.

What a write means is decided here, and nowhere else:

- keys are ``/dora/<plural>/<zone>/<workspace>/<name>``, leaving out the scopes a
  kind does not have; values are the serialized ``Object`` without its
  ``resourceVersion``, which is the key's etcd ``mod_revision`` and is filled in
  on every read;
- ``apply`` creates or updates spec, labels and annotations; ``generation`` moves
  only when the spec changes; an unchanged object is not written. With a
  ``resourceVersion`` the apply is a conditional full update (conflict:
  ``errors.Conflict``) that also replaces ``ownerReferences`` and ``finalizers``:
  that is how controllers that read an object change those;
- every write is one etcd transaction that also checks that the object's zone
  and workspace exist, so a typo in a zone name is an error, not a new zone;
- ``update_status`` replaces only the status;
- an update keeps a Workload's or Container's stored ``spec.paused``: only the
  Pausing service (``set_paused``) changes it, so applying a file again never
  thaws what a user paused;
- a ``Lease`` object's key is bound to the etcd lease its spec names, so etcd
  deletes it when its holder stops keeping that lease alive;
- ``delete`` of an object with finalizers sets ``deletionTimestamp``; the object
  goes when an update removes the last finalizer. Objects that name the deleted
  one in ``ownerReferences`` are deleted after it by the garbage collector
  (``dora.controllers.gc``), not in the request;
- ``apply``, ``update_status`` and ``delete`` are one loop (``_write``): read,
  decide, write conditionally on the version read, and on a conflict read again
  and decide again.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf import message

from dora.api import errors, kinds, labels, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, resources_pb2
from dora.apiserver.storage import KV, Etcd

ROOT = b"/dora/"
_RETRIES = 8

Result = resources_pb2.ApplyResponse.Result
# Defaults then validates an object about to be stored, in place (raises ``errors.Invalid``).
Admit = Callable[[object_pb2.Object], None]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Scope:
    """Where an object goes when its YAML does not say."""

    zone: str = "default"
    workspace: str = "default"


def prefix(kind: kinds.Kind, zone: str = "", workspace: str = "") -> bytes:
    """The key prefix of a kind, narrowed to a zone and a workspace when given."""
    parts = [kind.plural]
    if kind.zoned and zone:
        parts.append(zone)
        if kind.workspaced and workspace:
            parts.append(workspace)
    return ROOT + "/".join(parts).encode() + b"/"


def key(ref: Ref) -> bytes:
    kind = kinds.get(ref.kind)
    parts = [kind.plural]
    if kind.zoned:
        parts.append(ref.zone)
    if kind.workspaced:
        parts.append(ref.workspace)
    parts.append(ref.name)
    return ROOT + "/".join(parts).encode()


def decode(kv: KV) -> object_pb2.Object:
    obj = object_pb2.Object.FromString(kv.value)
    obj.metadata.resource_version = kv.mod_revision
    return obj


def encode(obj: object_pb2.Object) -> bytes:
    """``obj`` as stored: without its resourceVersion (``obj`` is left as it was)."""
    version = obj.metadata.resource_version
    if not version:
        return obj.SerializeToString()
    obj.metadata.resource_version = 0
    try:
        return obj.SerializeToString()
    finally:
        obj.metadata.resource_version = version


class Registry:
    def __init__(
        self,
        *,
        etcd: Etcd,
        scope: Scope | None = None,
        now: Callable[[], dt.datetime] = _utcnow,
        admit: Admit,
        cached: Callable[[Ref, bytes], object_pb2.Object | None] | None = None,
    ) -> None:
        """``admit`` defaults and validates every object about to be written (the
        apiserver's admission, ``dora.apiserver.admission.admitter``: it sits above
        the registry and is handed in). ``cached`` reads an object from a watch cache:
        an apply first trusts it and lets the transaction's revision check catch a
        stale read, saving an etcd read."""
        self.etcd = etcd
        self._admission = admit
        self.scope = scope or Scope()
        self._now = now
        self._cached = cached

    def scope_for(self, *, zone: str, workspace: str) -> Scope:
        """A caller's defaults (its User's, or its token's) where it has them, else the
        server's."""
        return Scope(zone=zone or self.scope.zone, workspace=workspace or self.scope.workspace)

    def resolve(self, ref: Ref, *, scope: Scope | None = None) -> Ref:
        """``ref`` with the default zone and workspace filled in where the kind has them."""
        kind = kinds.get(ref.kind)
        scope = scope or self.scope
        zone = (ref.zone or scope.zone) if kind.zoned else ""
        workspace = (ref.workspace or scope.workspace) if kind.workspaced else ""
        return Ref(kind.name, zone, workspace, ref.name)

    def _requires(self, ref: Ref) -> list[bytes]:
        kind = kinds.get(ref.kind)
        required = []
        if kind.zoned:
            required.append(key(Ref("Zone", "", "", ref.zone)))
        if kind.workspaced:
            required.append(key(Ref("Workspace", "", "", ref.workspace)))
        return required

    async def get(self, ref: Ref) -> object_pb2.Object:
        ref = self.resolve(ref)
        kv = await self.etcd.get(key(ref))
        if kv is None:
            raise errors.NotFound(f"{ref} not found")
        return decode(kv)

    async def apply(
        self,
        request: object_pb2.Object,
        *,
        dry_run: bool = False,
        create_only: bool = False,
        finalizers_only: bool = False,
        scope: Scope | None = None,
        check: Callable[[object_pb2.Object | None, object_pb2.Object], None] | None = None,
        set_paused: bool = False,
    ) -> tuple[object_pb2.Object, Result.ValueType]:
        """Create or update; ``finalizers_only`` refuses any change but to finalizers
        (what a node may do to the Containers bound to it). ``check`` sees the object
        now (None: absent) and what would be written, and raises to refuse it; the
        write is conditional on the object it saw."""
        incoming = _admit(request, resolve=lambda r: self.resolve(r, scope=scope),
                          admit=self._admission)
        ref = objects.ref_of(incoming)
        precondition = request.metadata.resource_version
        result = Result.UNCHANGED

        def decide(current: object_pb2.Object | None, cached: bool) -> _Step:
            nonlocal result
            if current is None:
                if precondition:
                    raise _conflict(ref, precondition, None)
                if finalizers_only:
                    raise errors.Forbidden(f"{ref}: only finalizers may be changed, and it "
                                           "does not exist")
                new, result = self._created(incoming), Result.CREATED
            elif create_only:
                raise errors.AlreadyExists(f"{ref} already exists")
            else:
                new, result = self._updated(current, incoming, full=bool(precondition),
                                            keep_paused=not set_paused)
                if result == Result.UNCHANGED:
                    return _Step(current)
                if finalizers_only and not _only_finalizers_differ(current, new):
                    raise errors.Forbidden(f"{ref}: only finalizers may be changed")
            if check is not None:
                if current is not None and cached:
                    raise _Reread  # decide on etcd's object, not on a cache that may lag
                check(current, new)
            if dry_run:
                return _Step(new)
            if current is not None and new.metadata.HasField("deletion_timestamp") and not (
                    new.metadata.finalizers):
                if cached:
                    raise _Reread
                return _Step(current, _REMOVE)
            return _Step(new, _PUT, requires=self._requires(ref),
                         lease=new.lease.spec.lease_id if new.kind == "Lease" else 0)

        stored = await self._write(ref, decide, precondition=precondition,
                                   from_cache=not dry_run)
        if dry_run and result != Result.UNCHANGED:
            await self._check_scope_exists(ref)
        return stored, result

    async def _write(
        self, ref: Ref, decide: Callable[[object_pb2.Object | None, bool], _Step], *,
        precondition: int = 0, from_cache: bool = False,
    ) -> object_pb2.Object:
        """The conditional-write loop every write of one object goes through: read the
        object (from the watch cache when ``from_cache``), ``decide`` what to do with
        it, and write that only if the object is still at the version read; when it
        moved on meanwhile, read it again and decide again.

        ``decide`` sees the object (None: absent) and whether it came from the
        cache; it raises to refuse (``_Reread``: decide again on etcd's object). A
        refusal or a decision to write nothing made on a cached read is made again
        on etcd's: a cache that lags never refuses or hides a newer write. With a
        ``precondition`` (the resourceVersion the caller read), any other version
        is ``errors.Conflict``. Returns what was stored (with its new
        resourceVersion), what was removed, or what ``decide`` kept."""
        cached = from_cache and self._cached is not None
        known: tuple[object_pb2.Object | None] | None = None  # what a failed write found
        for _ in range(_RETRIES):
            if known is not None:
                current, known = known[0], None
            else:
                current = await self._current(ref, from_cache=cached)
            try:
                if precondition and current is not None and (
                        current.metadata.resource_version != precondition):
                    raise _conflict(ref, precondition, current)
                step = decide(current, cached)
            except (errors.DoraError, _Reread):
                if cached:
                    cached = False
                    continue
                raise
            if step.action == _KEEP:
                if cached:  # a stale cache must not hide a newer write
                    cached = False
                    continue
                return step.obj
            version = current.metadata.resource_version if current is not None else 0
            if step.action == _REMOVE:
                write = await self.etcd.delete_if(key(ref), mod_revision=version)
            else:
                write = await self.etcd.put_if(key(ref), encode(step.obj), mod_revision=version,
                                               requires=step.requires, lease=step.lease)
            if write.succeeded:
                written = step.obj if step.action == _PUT else _copy(step.obj)
                written.metadata.resource_version = write.revision
                return written
            if write.missing:
                raise self._missing_scope(ref, write.missing)
            found = decode(write.current) if write.current is not None else None
            if precondition and not cached:
                raise _conflict(ref, precondition, found)
            known = (found,)  # etcd's object as the failed write found it: no read again
            cached = False
        raise errors.Unavailable(f"{ref}: too many concurrent writers; try again")

    async def _current(self, ref: Ref, *, from_cache: bool) -> object_pb2.Object | None:
        """The object at ``ref`` from the watch cache (shared: never change it), or from
        etcd. A write based on a cached object is conditional on its resourceVersion,
        so a stale cache costs a retry from etcd, never a lost update."""
        if from_cache and self._cached is not None:
            return self._cached(ref, key(ref))
        kv = await self.etcd.get(key(ref))
        return decode(kv) if kv else None

    async def write_all(
        self, *, create: Sequence[object_pb2.Object] = (),
        update: Sequence[tuple[object_pb2.Object, object_pb2.Object]] = (),
    ) -> bool:
        """Create every object of ``create`` (none may exist yet) and apply each
        ``(current, wanted)`` of ``update`` (``current`` as read, so the write is
        conditional on its resourceVersion), in one etcd transaction: all or nothing.
        False when something moved or already exists; nothing is written then."""
        items: list[tuple[bytes, bytes, int]] = []
        requires: set[bytes] = set()
        for request in create:
            new = self._created(_admit(request, resolve=self.resolve, admit=self._admission))
            ref = objects.ref_of(new)
            items.append((key(ref), encode(new), 0))
            requires.update(self._requires(ref))
        for current, wanted in update:
            admitted = _admit(wanted, resolve=self.resolve, admit=self._admission)
            new, result = self._updated(current, admitted, full=False)
            if result != Result.UNCHANGED:
                items.append((key(objects.ref_of(new)), encode(new),
                              current.metadata.resource_version))
        created = {k for k, _, _ in items}
        return await self.etcd.put_all_if(items, requires=sorted(requires - created))

    def record(self, request: object_pb2.Object) -> tuple[bytes, bytes]:
        """The key and value a new object would be stored as (for bootstrap transactions)."""
        new = self._created(_admit(request, resolve=self.resolve, admit=self._admission))
        return key(objects.ref_of(new)), encode(new)

    def _created(self, incoming: object_pb2.Object) -> object_pb2.Object:
        """``incoming`` (the private copy ``_admit`` made) made a new object."""
        new = incoming
        meta = new.metadata
        meta.uid = str(uuid.uuid4())
        meta.generation = 1
        meta.resource_version = 0
        meta.creation_timestamp.FromDatetime(self._now())
        meta.ClearField("deletion_timestamp")
        return new

    def _updated(
        self, current: object_pb2.Object, incoming: object_pb2.Object, *, full: bool,
        keep_paused: bool = True,
    ) -> tuple[object_pb2.Object, Result.ValueType]:
        ref = objects.ref_of(current)
        if current.metadata.HasField("deletion_timestamp") and not full:
            raise errors.Conflict(f"{ref} is being deleted")
        new = object_pb2.Object()
        new.CopyFrom(current)
        meta, given = new.metadata, incoming.metadata
        meta.labels.clear()
        meta.labels.update(given.labels)
        meta.annotations.clear()
        meta.annotations.update(given.annotations)
        if full:
            del meta.owner_references[:]
            meta.owner_references.extend(given.owner_references)
            del meta.finalizers[:]
            meta.finalizers.extend(given.finalizers)
        new_spec, old_spec = _spec(new), _spec(incoming)
        if keep_paused and current.kind in ("Workload", "Container"):
            old_spec.paused = new_spec.paused  # type: ignore[attr-defined]
        if new_spec != old_spec:
            new_spec.CopyFrom(old_spec)
            meta.generation += 1
        if new == current:
            return current, Result.UNCHANGED
        return new, Result.CONFIGURED

    async def update_status(self, request: object_pb2.Object) -> object_pb2.Object:
        kind = kinds.get(request.kind)
        if not kind.has_status:
            raise errors.Invalid(f"a {kind.name} has no status", field="status")
        ref = self.resolve(objects.ref_of(request))
        status = objects.body(request).status  # type: ignore[attr-defined]

        def decide(current: object_pb2.Object | None, cached: bool) -> _Step:
            if current is None:
                raise errors.NotFound(f"{ref} not found")
            new = _copy(current)
            objects.body(new).status.CopyFrom(status)  # type: ignore[attr-defined]
            return _Step(current) if new == current else _Step(new, _PUT)

        return await self._write(ref, decide, precondition=request.metadata.resource_version,
                                 from_cache=True)

    async def delete(self, ref: Ref, *, resource_version: int = 0) -> object_pb2.Object:
        """Delete the object, or with finalizers mark it (``deletionTimestamp``): it goes
        when an update removes the last one. What it owns is deleted after it by the
        garbage collector (``dora.controllers.gc``), never here: a delete reads and
        writes one key."""
        ref = self.resolve(ref)

        def decide(current: object_pb2.Object | None, cached: bool) -> _Step:
            if current is None:
                raise errors.NotFound(f"{ref} not found")
            if not current.metadata.finalizers:
                return _Step(current, _REMOVE)
            if current.metadata.HasField("deletion_timestamp"):
                return _Step(current)
            marked = _copy(current)
            marked.metadata.deletion_timestamp.FromDatetime(self._now())
            return _Step(marked, _PUT)

        return await self._write(ref, decide, precondition=resource_version)

    async def list(
        self,
        kind_name: str,
        *,
        zone: str = "",
        workspace: str = "",
        selector: labels.Selector = labels.EVERYTHING,
        limit: int = 0,
        continue_token: str = "",
        visible: Callable[[object_pb2.Object], bool] | None = None,
    ) -> tuple[list[object_pb2.Object], int, str]:
        """Objects of a kind (optionally in a zone/workspace), a page at a time.

        Every page is read at the revision of the first one, so a paginated list
        is one consistent snapshot; once etcd compacts that revision the next page
        is ``errors.Gone`` and the client lists again.

        Only what ``visible`` accepts counts: a page holds ``limit`` such objects
        unless the list ends, and a continue token is given only when one more
        of them follows (it starts there), so paging tells nothing of the rest.
        """
        kind = kinds.get(kind_name)
        scope_prefix = prefix(kind, zone, workspace)
        revision, start = 0, None
        if continue_token:
            revision, start = parse_continue(continue_token, scope_prefix)
        if limit < 0:
            raise errors.Invalid("must be >= 0", field="limit")
        items: list[object_pb2.Object] = []
        while True:
            page = await self.etcd.range(
                scope_prefix, start=start, revision=revision, limit=limit and limit + 1
            )
            revision = revision or page.revision
            for kv in page.kvs:
                obj = decode(kv)
                if workspace and obj.metadata.workspace != workspace:
                    continue
                if not selector.matches(obj.metadata.labels):
                    continue
                if visible is not None and not visible(obj):
                    continue
                if limit and len(items) == limit:
                    # One more follows: the next page starts with it.
                    return items, revision, continue_token_at(revision, kv.key)
                items.append(obj)
            if not page.more or not page.kvs:
                return items, revision, ""
            start = page.kvs[-1].key + b"\0"

    async def _check_scope_exists(self, ref: Ref) -> None:
        required = self._requires(ref)
        found = await self.etcd.get_many(required)
        missing = tuple(k for k, kv in zip(required, found, strict=True) if kv is None)
        if missing:
            raise self._missing_scope(ref, missing)

    def _missing_scope(self, ref: Ref, missing: tuple[bytes, ...]) -> errors.DoraError:
        if key(Ref("Zone", "", "", ref.zone)) in missing:
            return errors.NotFound(
                f"zone {ref.zone!r} does not exist; create it first (kind: Zone)",
                violations=(errors.FieldViolation("metadata.zone", "zone does not exist"),),
            )
        return errors.NotFound(
            f"workspace {ref.workspace!r} does not exist; create it first (kind: Workspace)",
            violations=(errors.FieldViolation("metadata.workspace", "workspace does not exist"),),
        )


def _admit(
    request: object_pb2.Object, *, resolve: Callable[[Ref], Ref], admit: Admit,
) -> object_pb2.Object:
    """The request as it will be stored: scoped, server fields cleared, defaulted, valid."""
    if not request.kind:
        raise errors.Invalid("required", field="kind")
    kind = kinds.get(request.kind)
    if request.WhichOneof("body") not in (None, kind.field):
        raise errors.Invalid(f"the body is a {request.WhichOneof('body')}, not a {kind.name}",
                             field="kind")
    obj = object_pb2.Object()
    obj.CopyFrom(request)
    obj.api_version = "v1"
    resolved, meta = resolve(objects.ref_of(obj)), obj.metadata
    if kind.zoned:
        meta.zone = resolved.zone
    if kind.workspaced:
        meta.workspace = resolved.workspace
    for server_field in ("uid", "generation", "creation_timestamp", "deletion_timestamp",
                         "resource_version"):
        meta.ClearField(server_field)
    body = objects.body(obj)
    body.SetInParent()
    if "status" in body.DESCRIPTOR.fields_by_name:
        body.ClearField("status")
    admit(obj)
    return obj


# What one pass of ``Registry._write`` does with the object.
_KEEP, _PUT, _REMOVE = "keep", "put", "remove"


@dataclass(frozen=True)
class _Step:
    """``obj`` to return as it is (keep), to store (put), or to remove (remove:
    the object as read, returned at the revision of its deletion)."""

    obj: object_pb2.Object
    action: str = _KEEP
    requires: Sequence[bytes] = ()
    lease: int = 0


class _Reread(Exception):
    """Raised by a decision made on a cached object: decide again on etcd's."""


def _copy(obj: object_pb2.Object) -> object_pb2.Object:
    copy = object_pb2.Object()
    copy.CopyFrom(obj)
    return copy


def _only_finalizers_differ(a: object_pb2.Object, b: object_pb2.Object) -> bool:
    left, right = object_pb2.Object(), object_pb2.Object()
    left.CopyFrom(a)
    right.CopyFrom(b)
    left.metadata.ClearField("finalizers")
    right.metadata.ClearField("finalizers")
    return left == right


def _spec(obj: object_pb2.Object) -> message.Message:
    return objects.body(obj).spec  # type: ignore[attr-defined, no-any-return]


def _conflict(
    ref: Ref, expected: int, current: object_pb2.Object | None
) -> errors.Conflict:
    if current is None:
        return errors.Conflict(f"{ref} was deleted (expected resourceVersion {expected})")
    return errors.Conflict(
        f"{ref} was modified: resourceVersion is {current.metadata.resource_version}, "
        f"not {expected}; get it again and retry"
    )


def continue_token_at(revision: int, start: bytes) -> str:
    """The token of the pages of a List at ``revision`` from key ``start`` on."""
    payload = json.dumps({"rv": revision, "start": base64.b64encode(start).decode()})
    return base64.urlsafe_b64encode(payload.encode()).decode()


def parse_continue(token: str, scope_prefix: bytes) -> tuple[int, bytes]:
    """A continue token's revision and start key, for a List under ``scope_prefix``."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        revision, start = int(payload["rv"]), base64.b64decode(payload["start"])
    except (ValueError, KeyError, TypeError):
        raise errors.Invalid("malformed continue token", field="continue") from None
    if not start.startswith(scope_prefix):
        raise errors.Invalid("the continue token belongs to another list", field="continue")
    return revision, start
