"""Who was granted each etcd lease: ``/dora/leaseowners/<id in hex>`` holds the
user and node, written with the grant and bound to the lease itself, so etcd
drops the record with the lease. Only the owner keeps a lease alive, revokes it
or binds a Lease object to it (``services.leases``, ``services.resources``).
"""

from __future__ import annotations

from dora.api import errors
from dora.apiserver.auth.authorizer import Principal
from dora.apiserver.storage import Etcd

OWNERS = b"/dora/leaseowners/"


def owner_of(principal: Principal) -> bytes:
    return f"{principal.user}\0{principal.node}".encode()


async def owns(etcd: Etcd, principal: Principal, lease_id: int) -> bool:
    kv = await etcd.get(OWNERS + b"%x" % lease_id)
    return kv is not None and kv.value == owner_of(principal)


async def require_owner(etcd: Etcd, principal: Principal, lease_id: int) -> None:
    """Raise ``errors.NotFound`` unless ``principal`` was granted ``lease_id`` (a lease
    of someone else's is as unknown to the caller as one that does not exist)."""
    if not await owns(etcd, principal, lease_id):
        raise errors.NotFound(
            f"no lease {lease_id:x} of yours (leases are kept alive, revoked and bound "
            "by whoever was granted them)", violations=(errors.FieldViolation(
                "lease_id", "not a lease granted to the caller"),))
