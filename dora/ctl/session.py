"""Running a command's async work against the apiserver.

Commands are plain functions; the part that talks to the cluster is a coroutine
handed a ``Session`` (the client, plus the connection's zone and workspace) and
run with ``asyncio.run``. The connection is resolved before the event loop
starts, so a bad profile fails before any network call; an unavailable server is
reported with the endpoint that was tried.

asyncio, grpc and the protos are imported when a command runs its work, not with
this module, which every command module imports (``doractl --help`` too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dora.api import errors, kinds
from dora.ctl import profiles

if TYPE_CHECKING:
    from dora.api import objects
    from dora.api.client import Client
    from dora.api.v1 import object_pb2
    from dora.api.workloads import retry_on_conflict

T = TypeVar("T")

__all__ = ["Session", "retry_on_conflict", "run"]


@dataclass(frozen=True)
class Session:
    client: Client
    connection: profiles.Connection

    def scope(self, kind: kinds.Kind, *, everywhere: bool = False) -> tuple[str, str]:
        """The zone and workspace to read ``kind`` in: the kind's scopes only; none with
        ``everywhere`` (``-A``), and none that nobody named (then the server decides)."""
        if everywhere:
            return "", ""
        zone = self.connection.zone if kind.zoned else ""
        workspace = self.connection.workspace if kind.workspaced else ""
        return zone, workspace

    def fill_scope(self, obj: object_pb2.Object) -> object_pb2.Object:
        """``obj`` with the connection's zone and workspace where it names none."""
        kind = kinds.get(obj.kind)
        if kind.zoned and not obj.metadata.zone and self.connection.zone:
            obj.metadata.zone = self.connection.zone
        if kind.workspaced and not obj.metadata.workspace and self.connection.workspace:
            obj.metadata.workspace = self.connection.workspace
        return obj

    async def get(self, kind: kinds.Kind, name: str) -> object_pb2.Object:
        zone, workspace = self.scope(kind)
        return await self.client.get(kind.name, name, zone=zone, workspace=workspace)

    def ref(self, kind: kinds.Kind, name: str) -> objects.Ref:
        from dora.api import objects

        zone, workspace = self.scope(kind)
        return objects.Ref(kind.name, zone, workspace, name)


def run(connection: profiles.Connection, work: Callable[[Session], Awaitable[T]], *,
        timeout: float = 30.0) -> T:
    """Connect, run ``work`` (each call limited to ``timeout`` seconds), close; return
    what ``work`` returned."""
    import asyncio

    from dora.api.client import Client

    root_certificates = _read_ca(connection.ca) if connection.ca else None

    async def main() -> T:
        async with Client(connection.target, token=connection.token or None,
                          root_certificates=root_certificates, tls=connection.tls,
                          timeout=timeout) as client:
            return await work(Session(client, connection))

    try:
        return asyncio.run(main())
    except errors.Unavailable as exc:
        raise errors.Unavailable(
            f"the apiserver at {connection.endpoint} is unavailable: {exc.message}"
        ) from exc


def _read_ca(path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise errors.DoraError(f"cannot read the CA bundle {path}: {exc.strerror}") from None


def __getattr__(name: str) -> Any:
    # ``session.retry_on_conflict``: dora.api.workloads, imported when first used.
    if name == "retry_on_conflict":
        from dora.api.workloads import retry_on_conflict

        return retry_on_conflict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
