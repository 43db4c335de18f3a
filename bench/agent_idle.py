"""What an idle ``dora-agent`` costs its node: CPU and resident memory.

A real agent process (node token, the local Docker engine, a declared Node with no
Container bound to it) is left to settle, then sampled from ``/proc/<pid>``: the CPU
is the growth of ``utime + stime`` (``stat``) over the window divided by the
window's wall time, the memory the largest ``VmRSS`` (``status``) seen, sampled
every half second. Idle still means working: the agent polls Docker every second,
reports the Node and keeps its Lease alive.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from bench.daemons import Daemon
from bench.figures import Figure

CPU_TARGET = 0.01  # of one core
RSS_TARGET_MIB = 80.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """``utime + stime`` of ``pid`` in seconds (``/proc/<pid>/stat`` fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


async def sample(daemon: Daemon, *, settle: float, seconds: float) -> list[Figure]:
    await asyncio.sleep(settle)
    if not daemon.alive():
        raise RuntimeError(f"the agent exited while settling:\n{daemon.log_tail()}")
    pid = daemon.pid
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    rss = [rss_mib(pid)]
    deadline = wall_before + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        rss.append(rss_mib(pid))
    cpu_share = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    if not daemon.alive():
        raise RuntimeError(f"the agent exited while sampled:\n{daemon.log_tail()}")
    peak = max(rss)
    window = f"pid {pid} over {seconds:.0f}s after {settle:.0f}s to settle"
    return [
        Figure(
            name="idle agent CPU",
            value=round(cpu_share * 100, 2), unit="% of a core",
            baseline={"what": "the target (docs/architecture.md)", "value": CPU_TARGET * 100,
                      "unit": "% of a core"},
            ratio=round(cpu_share / CPU_TARGET, 3),
            target="< 1% of a core", met=cpu_share < CPU_TARGET,
            notes=f"a real dora-agent with no Container bound (Docker polled every 1s, "
                  f"Node status and Lease kept up), utime+stime from /proc; {window}; "
                  f"clock tick {1 / TICKS * 1000:.0f} ms",
        ),
        Figure(
            name="idle agent resident memory",
            value=round(peak, 1), unit="MiB",
            baseline={"what": "the target (docs/architecture.md)", "value": RSS_TARGET_MIB,
                      "unit": "MiB"},
            ratio=round(peak / RSS_TARGET_MIB, 3),
            target="< 80 MiB", met=peak < RSS_TARGET_MIB,
            notes=f"the largest VmRSS of {len(rss)} samples, {window}",
        ),
    ]
