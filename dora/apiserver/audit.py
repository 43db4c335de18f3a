"""The audit log: one JSON line per mutating call (``--audit-log FILE``).

Every authenticated unary call that may change something (all but the reads in
``READS``) is recorded once it has been answered: when, who (user, token id,
node), the method and its verb, what it named (kind, zone, workspace, name:
the object as stored when the call succeeded, as the request named it when
it failed) and the result (``CREATED``, ``CONFIGURED``, ``UNCHANGED``, ``OK``, or
the gRPC code with its message). The gate records it (``gate.Gate``), so a
method added later is audited without being listed. Calls refused before they
were authenticated are not recorded: their body is never read, and an
anonymous flood must not fill the disk. The file is created 0600 and appended
to; tokens never appear in it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from dora.apiserver.auth.authorizer import Principal

# Calls that change nothing: not audited.
READS = frozenset({
    "/dora.api.v1.Resources/Get", "/dora.api.v1.Resources/List",
    "/dora.api.v1.Tokens/List", "/dora.api.v1.Tokens/WhoAmI",
    "/dora.api.v1.VolumeFiles/List",
})


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")

    def record(self, *, principal: Principal, method: str, request: Any, response: Any,
               code: str, message: str = "", request_id: str = "") -> None:
        entry: dict[str, Any] = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "request": request_id, "user": principal.user, "token": principal.token_id,
        }
        if principal.node:
            entry["node"] = principal.node
        entry["method"] = method.lstrip("/").removeprefix("dora.api.v1.")
        entry["verb"] = method.rsplit("/", 1)[-1]
        entry.update(_target(request, response if code == "OK" else None))
        result: int = getattr(response, "result", 0) if code == "OK" else 0
        entry["result"] = _RESULTS.get(result, "OK") if code == "OK" else code
        if message:
            entry["message"] = message
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


_RESULTS = {1: "CREATED", 2: "CONFIGURED", 3: "UNCHANGED"}


def _target(request: Any, response: Any) -> dict[str, Any]:
    """What a call named: kind, zone, workspace, name (and a few kind-free ids)."""
    obj = None
    for source in (response, request):
        if source is None:
            continue
        if hasattr(source, "DESCRIPTOR") and source.DESCRIPTOR.full_name == "dora.api.v1.Object":
            obj = source
        elif hasattr(source, "object") and source.HasField("object"):
            obj = source.object
        if obj is not None:
            break
    if obj is not None:
        meta = obj.metadata
        return {"kind": obj.kind, "zone": meta.zone, "workspace": meta.workspace,
                "name": meta.name}
    ref = getattr(request, "ref", None)
    if ref is not None:
        return {"kind": ref.kind, "zone": ref.zone, "workspace": ref.workspace, "name": ref.name}
    found: dict[str, Any] = {}
    for field in ("user", "id", "source", "destination", "zone", "lease_id"):
        value = getattr(request, field, None)
        if value:
            # A token's user is the subject of the call, not its caller.
            found["subject" if field == "user" else field] = value
    granted: int = getattr(response, "lease_id", 0) if response is not None else 0
    if granted:
        found["lease_id"] = granted
    return found
