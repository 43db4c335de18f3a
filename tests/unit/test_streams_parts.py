"""The small parts of logs/exec: Node endpoints, the agent secret file, prefixed lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.api import agentauth, errors
from dora.apiserver.agentlink import Endpoint, parse_endpoint
from dora.ctl.commands.streams import _Stdout


@pytest.mark.parametrize(("value", "expected"), [
    ("https://10.10.10.41:3001", Endpoint("10.10.10.41:3001", tls=True)),  # seed 004
    ("http://agent-cpu:3001", Endpoint("agent-cpu:3001", tls=False)),
    ("agent-cpu:3001", Endpoint("agent-cpu:3001", tls=False)),
    ("127.0.0.1:3001/", Endpoint("127.0.0.1:3001", tls=False)),
    ("node7", Endpoint("node7:3001", tls=False)),
    ("HTTPS://node7", Endpoint("node7:3001", tls=True)),
    ("[::1]:4001", Endpoint("[::1]:4001", tls=False)),
    ("https://[fe80::1]", Endpoint("[fe80::1]:3001", tls=True)),
    ("::1", Endpoint("[::1]:3001", tls=False)),
])
def test_node_endpoints(value: str, expected: Endpoint) -> None:
    assert parse_endpoint(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("ftp://node:21", "scheme 'ftp' is not http or https"),
    ("https://node:3001/api", "is not HOST:PORT"),
    ("node:99999", "is not a port number"),
    ("node:http", "is not a port number"),
    ("", "is not HOST:PORT"),
    (":3001", "names no host"),
])
def test_bad_node_endpoints_name_the_field(value: str, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message) as caught:
        parse_endpoint(value)
    assert caught.value.violations[0].field == "spec.endpoint"


def test_the_agent_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.secret"
    path.write_text("  0123456789abcdef0123  \n")
    assert agentauth.read_secret_file(path) == "0123456789abcdef0123"
    assert agentauth.matches("0123456789abcdef0123", "0123456789abcdef0123")
    assert not agentauth.matches("0123456789abcdef0123", "0123456789abcdef0124")
    path.write_text("short\n")
    with pytest.raises(agentauth.SecretError, match=r"too short \(5 characters, at least 16"):
        agentauth.read_secret_file(path)
    path.write_text("0123456789abcdef\n0123456789abcdef\n")
    with pytest.raises(agentauth.SecretError, match="one line"):
        agentauth.read_secret_file(path)
    with pytest.raises(agentauth.SecretError, match="cannot read the agent secret file"):
        agentauth.read_secret_file(tmp_path / "missing")


def test_workload_logs_prefix_whole_lines(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    out = _Stdout()
    out.lines("web.0", b"one\ntw")
    out.lines("web.1", b"alpha\n")
    out.lines("web.0", b"o\nthree")
    out.flush("web.0")
    out.flush("web.1")
    assert capfdbinary.readouterr().out == (
        b"[web.0] one\n[web.1] alpha\n[web.0] two\n[web.0] three\n"
    )
