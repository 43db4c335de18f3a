"""The audit log (``--audit-log``): one JSON line per mutating call, with who, what
and the result, refusals included; reads and unauthenticated calls are not in
it, and neither is any token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dora.api import errors, objects
from dora.api.client import Client
from dora.apiserver.server import APIServer, Config


@pytest.fixture
async def audited(apiserver_config: Config, tmp_path: Path) -> AsyncIterator[APIServer]:
    apiserver_config.audit_log = tmp_path / "audit" / "audit.jsonl"
    server = APIServer(apiserver_config)
    await server.start()
    yield server
    await server.stop(grace=0)


def entries(server: APIServer) -> list[dict[str, Any]]:
    path = server.config.audit_log
    assert path is not None
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_mutating_calls_are_audited_with_who_what_and_the_result(
    audited: APIServer,
) -> None:
    target = f"127.0.0.1:{audited.port}"
    assert audited.admin_token is not None and audited.config.audit_log is not None
    assert audited.config.audit_log.stat().st_mode & 0o777 == 0o600
    async with Client(target, token=audited.admin_token) as admin:
        zone = objects.new("Zone", "audited")
        await admin.apply(zone)
        await admin.apply(zone)  # unchanged
        await admin.get("Zone", "audited")  # a read: not audited
        await admin.list("Zone")
        user = objects.new("User", "alice")
        await admin.apply(user)
        token, _ = await admin.create_token("alice", "default", "t1")
        workload = objects.new("Workload", "w")
        with pytest.raises(errors.Invalid):
            await admin.apply(workload)  # no image: refused, and audited so
        await admin.delete("Zone", "audited")
        lease_id, _ = await admin.grant_lease(10)
        await admin.revoke_lease(lease_id)
    async with Client(target, token=token) as alice:
        with pytest.raises(errors.Forbidden):
            await alice.apply(objects.new("Zone", "mine"))
    async with Client(target, token="dora_unknown") as stranger:
        with pytest.raises(errors.Unauthenticated):
            await stranger.apply(objects.new("Zone", "anon"))
    log = entries(audited)
    summary = [(e["user"], e["verb"], e.get("kind", ""), e.get("name", ""), e["result"])
               for e in log]
    assert summary == [
        ("admin", "Apply", "Zone", "audited", "CREATED"),
        ("admin", "Apply", "Zone", "audited", "UNCHANGED"),
        ("admin", "Apply", "User", "alice", "CREATED"),
        ("admin", "Create", "", "", "OK"),
        ("admin", "Apply", "Workload", "w", "INVALID_ARGUMENT"),
        ("admin", "Delete", "Zone", "audited", "OK"),
        ("admin", "Grant", "", "", "OK"),
        ("admin", "Revoke", "", "", "OK"),
        ("alice", "Apply", "Zone", "mine", "PERMISSION_DENIED"),
    ]
    created = log[3]
    assert (created["method"], created["subject"], created["id"]) == (
        "Tokens/Create", "alice", "t1")
    assert log[4]["message"] and log[6]["lease_id"] == lease_id == log[7]["lease_id"]
    assert log[0]["token"] == "admin" and log[0]["time"].endswith("+00:00")
    ids = [e["request"] for e in log]
    assert len(set(ids)) == len(ids) and all(len(i) == 16 for i in ids)
    assert log[0]["zone"] == "" and log[0]["workspace"] == ""
    text = audited.config.audit_log.read_text()
    assert token not in text and audited.admin_token not in text
