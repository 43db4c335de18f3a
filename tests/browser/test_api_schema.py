"""schemathesis over dora-web's own OpenAPI document, against a real apiserver: for
every documented call it generates requests from the schema (valid and invalid path
values, queries and bodies) and the gateway must never answer 5xx, and every 4xx
must carry ``error.message``. Streams (watches, logs, exec) have their own tests.

The calls run with the admin's token and the gateway's own Origin, as the page
sends them; the apiserver is in this test's event loop, so the generated calls
(schemathesis is synchronous) run in a thread.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from dora.web import openapi
from tests.browser.gateway import Gateway

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_scope")]

STREAMS = ("/api/watch/", "/logs", "/exec", "/download")
# Per operation (29 of them, on two cores shared by several sessions).
EXAMPLES = int(os.environ.get("DORA_SCHEMATHESIS_EXAMPLES", "8"))


def _checked(gateway: Gateway, token: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(openapi.document())
    headers = {"Authorization": f"Bearer {token}", "Origin": gateway.url}
    seen: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if any(part in operation.path for part in STREAMS):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            response = case.call(base_url=gateway.url, headers=headers, timeout=10)
            where = f"{case.method} {case.formatted_path} -> {response.status_code}"
            assert response.status_code < 500, f"{where}: {response.text[:500]}"
            if response.status_code >= 400:
                try:
                    error = response.json()["error"]
                except (ValueError, KeyError, TypeError):
                    raise AssertionError(f"{where}: not an error body: {response.text[:300]!r}"
                                         f" (asked: {case.headers}, {case.query}, "
                                         f"{case.body!r})") from None
                assert error["message"], where

        call()
        seen.append(f"{operation.method.upper()} {operation.path}")
    return seen


async def test_schemathesis_finds_no_server_error_and_no_4xx_without_a_message(
        gateway: Gateway, admin_token: str) -> None:
    seen = await asyncio.to_thread(_checked, gateway, admin_token)
    assert len(seen) >= 15, seen
    assert "POST /api/apply" in seen
