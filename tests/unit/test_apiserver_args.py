"""The apiserver's command line: what seed 004's `docker run -e ZONE=...` means."""

from __future__ import annotations

import pytest

from dora.apiserver import main


@pytest.mark.parametrize(("env", "zone"), [
    ({}, "default"),
    ({"ZONE": "dora-cluster-1"}, "dora-cluster-1"),
    ({"DORA_ZONE": "dc-rov-01", "ZONE": "dora-cluster-1"}, "dc-rov-01"),
])
def test_the_default_zone_comes_from_the_environment_like_seed_004s(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], zone: str
) -> None:
    for name in ("DORA_ZONE", "ZONE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main.parse_args(["--etcd-endpoints", "127.0.0.1:1"]).scope.zone == zone
    assert main.parse_args(["--default-zone", "z"]).scope.zone == "z"
