"""The Node status the agent builds, and the command line it starts from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dora.agent import main, nodestatus
from dora.agent.inventory import GPU, Snapshot

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
SNAPSHOT = Snapshot(
    cpu_model="AMD EPYC", cpu_count=64, memory_bytes=512 * 1024**3,
    gpus=(GPU(0, "GPU-a", "A100", 80, 1), GPU(1, "GPU-b", "A100", 80, 2)),
    simulated_gpus=False,
)


def test_a_ready_node_reports_its_inventory_and_who_uses_each_gpu() -> None:
    status = nodestatus.build_status(SNAPSHOT, assignments={"GPU-b": "team/train.0"},
                                     docker_error=None, previous=None, now=NOW)
    assert status.phase == "Ready"
    assert (status.cpu.product_name, status.cpu.count) == ("AMD EPYC", 64)
    assert status.memory_bytes == 512 * 1024**3
    assert [(g.uuid, g.container) for g in status.gpus] == [("GPU-a", ""),
                                                            ("GPU-b", "team/train.0")]
    assert status.agent_version == nodestatus.AGENT_VERSION
    [ready] = status.conditions
    assert (ready.type, ready.status) == ("Ready", "True")
    assert ready.last_transition_time.ToDatetime(dt.UTC) == NOW


def test_without_docker_the_node_is_not_ready_and_says_why() -> None:
    ready = nodestatus.build_status(SNAPSHOT, assignments={}, docker_error=None,
                                    previous=None, now=NOW)
    later = NOW + dt.timedelta(minutes=1)
    status = nodestatus.build_status(SNAPSHOT, assignments={}, previous=ready, now=later,
                                     docker_error="cannot reach the Docker engine")
    assert status.phase == "NotReady"
    [condition] = status.conditions
    assert condition.reason == "DockerUnavailable"
    assert condition.message == "cannot reach the Docker engine"
    assert condition.last_transition_time.ToDatetime(dt.UTC) == later
    again = nodestatus.build_status(SNAPSHOT, assignments={}, previous=status,
                                    now=later + dt.timedelta(minutes=1),
                                    docker_error="cannot reach the Docker engine")
    assert again.conditions[0].last_transition_time.ToDatetime(dt.UTC) == later


def test_gpu_memory_in_use_and_last_seen_do_not_count_as_a_change() -> None:
    first = nodestatus.build_status(SNAPSHOT, assignments={}, docker_error=None,
                                    previous=None, now=NOW)
    busier = Snapshot(**{**SNAPSHOT.__dict__,
                         "gpus": tuple(GPU(g.index, g.uuid, g.product_name, 80, 70)
                                       for g in SNAPSHOT.gpus)})
    second = nodestatus.build_status(busier, assignments={}, docker_error=None,
                                     previous=first, now=NOW)
    second.last_seen.FromDatetime(NOW)
    assert nodestatus.comparable(first) == nodestatus.comparable(second)
    assigned = nodestatus.build_status(SNAPSHOT, assignments={"GPU-a": "t/x"},
                                       docker_error=None, previous=first, now=NOW)
    assert nodestatus.comparable(first) != nodestatus.comparable(assigned)


def test_flags(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    options, level = main.parse_args([
        "--server", "10.0.0.1:3000,10.0.0.2:3000", "--token-file", str(token),
        "--node-name", "gpu-1", "--zone", "eu-1", "--listen", "127.0.0.1:3101",
        "--docker-host", "unix:///run/other.sock",
        "--simulate-gpus", "2xTesla V100-SXM2-16GB", "--lease-ttl", "5",
    ])
    assert options.servers == ["10.0.0.1:3000", "10.0.0.2:3000"]
    assert options.token == "s3cret"
    assert (options.agent.node, options.agent.zone, options.agent.lease_ttl) == ("gpu-1",
                                                                                 "eu-1", 5)
    assert options.listen == ("127.0.0.1", 3101)
    assert options.docker_host == "unix:///run/other.sock"
    assert options.simulated_gpus == ["Tesla V100-SXM2-16GB"] * 2
    assert not options.tls
    assert level == "INFO"


def test_flag_defaults() -> None:
    options, _ = main.parse_args(["--node-name", "n1"])
    assert options.listen == ("0.0.0.0", 3001)
    assert options.docker_host == "unix:///var/run/docker.sock"
    assert options.agent.lease_ttl == 15
    assert options.agent.zone == "default"
    assert options.simulated_gpus == []
    assert main.parse_args(["--server", "https://api.example:443"])[0].tls


@pytest.mark.parametrize("flags", [["--listen", "3001"], ["--simulate-gpus", "0xA100"],
                                   ["--lease-ttl", "1"]])
def test_bad_flags_are_refused(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.parse_args(flags)
    assert "dora-agent" in capsys.readouterr().err
