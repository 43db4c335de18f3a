"""dora-web in the compose cluster: the image's gateway answers the board's API with
the admin's token (passed through to the apiservers), refuses a call without one,
and serves the built page."""

from __future__ import annotations

import httpx
import pytest

from e2e.cluster import ZONE, eventually

pytestmark = pytest.mark.timeout(300)

WEB = "http://127.0.0.1:18080"


def test_the_board_api_answers_through_dora_web(cluster: str) -> None:
    auth = {"Authorization": f"Bearer {cluster}"}

    def whoami() -> dict[str, str] | None:
        try:
            response = httpx.get(f"{WEB}/api/whoami", headers=auth, timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    me = eventually("dora-web to answer /api/whoami", whoami, within=120)
    assert me["user"] == "admin" and me["zone"] == ZONE
    refused = httpx.get(f"{WEB}/api/whoami", timeout=5)
    assert refused.status_code == 401
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
    listed = httpx.get(f"{WEB}/api/objects/workloads", headers=auth, timeout=10)
    assert listed.status_code == 200 and listed.json()["resourceVersion"] > 0
    page = httpx.get(f"{WEB}/", timeout=5)
    assert page.status_code == 200 and '<div id="app">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
