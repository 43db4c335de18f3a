"""Logs and exec on the compose cluster: through either apiserver, to either agent, with
the agent secret the first apiserver made in the shared volume."""

from __future__ import annotations

import pytest

from e2e.cluster import APISERVERS, Doractl, eventually
from e2e.test_system import apply, replicas_running, workload_yaml

pytestmark = pytest.mark.timeout(600)

TALKER = "sh -c 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done'"


def test_logs_and_exec_through_either_apiserver(ctl: Doractl) -> None:
    apply(ctl, workload_yaml("talker", replicas=2, cmd=TALKER))
    assert replicas_running(ctl, "talker", 2) == ["e2e-cpu", "e2e-gpu"]
    names = sorted(c["metadata"]["name"] for c in ctl.containers("talker"))
    for server in APISERVERS:
        def both_talk(server: str = server) -> list[str] | None:
            lines = ctl("logs", "workload/talker", "--tail", "1", server=server).stdout
            prefixes = sorted(line.split("]")[0] + "]" for line in lines.splitlines())
            return prefixes if prefixes == [f"[{n}]" for n in names] else None

        eventually(f"a line from each container through {server}", both_talk, within=30)
        for name in names:
            result = ctl("exec", name, "--", "sh", "-c", "echo in $(hostname); exit 9",
                         check=False, server=server)
            assert (result.returncode, result.stdout.startswith("in ")) == (9, True), result
    ctl("delete", "workload", "talker", "--wait")
    replicas_running(ctl, "talker", 0)
