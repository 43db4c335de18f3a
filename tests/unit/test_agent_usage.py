"""The agent's usage measurement (``dora.agent.usage``): cgroup v1 and v2 files as the
kernel writes them, laid out in tmp_path; when a sample is worth a write; GPU
utilisation through NVML (simulated) into the Node status."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dora.agent import nodestatus, usage
from dora.agent.inventory import Inventory, SimulatedNVML, parse_fault
from dora.api.v1 import workloads_pb2

DOCKER_ID = "3f1e" + "0" * 60

V1_PROC = f"""12:pids:/docker/{DOCKER_ID}
11:memory:/docker/{DOCKER_ID}
5:cpu,cpuacct:/docker/{DOCKER_ID}
1:name=systemd:/docker/{DOCKER_ID}
0::/system.slice/containerd.service
"""

V2_PROC = f"0::/system.slice/docker-{DOCKER_ID}.scope\n"

V1_MEMORY_STAT = """cache 1048576
rss 8388608
inactive_file 524288
total_cache 1048576
total_rss 8388608
total_inactive_file 2097152
"""

V2_CPU_STAT = """usage_usec 2500000
user_usec 2000000
system_usec 500000
nr_periods 0
"""

V2_MEMORY_STAT = """anon 8388608
file 4194304
inactive_file 1048576
active_file 3145728
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(root: Path, *, cpu_ns: int, used: int) -> Path:
    """A cgroup v1 host: cpu,cpuacct and memory hierarchies (as Docker's cgroupfs
    driver lays them out); returns the cpu directory."""
    cpu = root / "cpu,cpuacct" / "docker" / DOCKER_ID
    memory = root / "memory" / "docker" / DOCKER_ID
    write(cpu / "cpuacct.usage", f"{cpu_ns}\n")
    write(memory / "memory.usage_in_bytes", f"{used}\n")
    write(memory / "memory.stat", V1_MEMORY_STAT)
    return cpu


def test_v1_proc_cgroup_names_the_cpuacct_and_memory_directories(tmp_path: Path) -> None:
    v1_tree(tmp_path, cpu_ns=0, used=0)
    found = usage.parse_proc_cgroup(V1_PROC, root=tmp_path)
    assert found == usage.Cgroup(cpu=tmp_path / "cpu,cpuacct" / "docker" / DOCKER_ID,
                                 memory=tmp_path / "memory" / "docker" / DOCKER_ID, v2=False)


def test_v1_separate_cpuacct_mount(tmp_path: Path) -> None:
    (tmp_path / "cpuacct").mkdir()
    (tmp_path / "memory").mkdir()
    text = f"4:memory:/docker/{DOCKER_ID}\n2:cpuacct:/docker/{DOCKER_ID}\n1:cpu:/docker/x\n"
    found = usage.parse_proc_cgroup(text, root=tmp_path)
    assert found.cpu == tmp_path / "cpuacct" / "docker" / DOCKER_ID
    assert not found.v2


def test_v2_proc_cgroup_is_one_unified_directory(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    found = usage.parse_proc_cgroup(V2_PROC, root=tmp_path)
    directory = tmp_path / "system.slice" / f"docker-{DOCKER_ID}.scope"
    assert found == usage.Cgroup(cpu=directory, memory=directory, v2=True)


def test_proc_cgroup_without_cpu_or_memory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(usage.CgroupError, match="no cpuacct and memory"):
        usage.parse_proc_cgroup("4:memory:/docker/x\n", root=tmp_path)


def test_cgroup_of_reads_proc(tmp_path: Path) -> None:
    write(tmp_path / "proc" / "4242" / "cgroup", V1_PROC)
    found = usage.cgroup_of(4242, proc=tmp_path / "proc", root=tmp_path / "sys")
    assert found.memory == tmp_path / "sys" / "memory" / "docker" / DOCKER_ID
    with pytest.raises(usage.CgroupError, match="/proc/4243/cgroup"):
        usage.cgroup_of(4243, proc=tmp_path / "proc")


def test_read_v1_counts_cpu_time_and_memory_less_inactive_file(tmp_path: Path) -> None:
    v1_tree(tmp_path, cpu_ns=123_456_789, used=64 * 1024 * 1024)
    reading = usage.read(usage.parse_proc_cgroup(V1_PROC, root=tmp_path), now=10.0)
    # total_inactive_file (the hierarchy's), not the cgroup's own inactive_file
    assert reading == usage.Reading(cpu_ns=123_456_789,
                                    memory_bytes=64 * 1024 * 1024 - 2097152, at=10.0)


def test_read_v2_counts_usage_usec_and_memory_current(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    cgroup = usage.parse_proc_cgroup(V2_PROC, root=tmp_path)
    write(cgroup.cpu / "cpu.stat", V2_CPU_STAT)
    write(cgroup.memory / "memory.current", "16777216\n")
    write(cgroup.memory / "memory.stat", V2_MEMORY_STAT)
    reading = usage.read(cgroup, now=1.0)
    assert reading == usage.Reading(cpu_ns=2_500_000_000, memory_bytes=16777216 - 1048576,
                                    at=1.0)


def test_read_names_the_missing_file(tmp_path: Path) -> None:
    cgroup = usage.Cgroup(cpu=tmp_path / "gone", memory=tmp_path / "gone", v2=False)
    with pytest.raises(usage.CgroupError, match=r"gone/cpuacct\.usage"):
        usage.read(cgroup)
    write(tmp_path / "v2" / "cpu.stat", "user_usec 1\n")
    with pytest.raises(usage.CgroupError, match="no usage_usec"):
        usage.read(usage.Cgroup(cpu=tmp_path / "v2", memory=tmp_path / "v2", v2=True))


def test_millicores_from_two_readings() -> None:
    before = usage.Reading(cpu_ns=1_000_000_000, memory_bytes=0, at=100.0)
    # 7.5 s of CPU time in 5 s: one and a half cores
    after = usage.Reading(cpu_ns=8_500_000_000, memory_bytes=0, at=105.0)
    assert usage.millicores(before, after) == 1500
    assert usage.millicores(after, after) == 0
    # a counter that went back (a new cgroup) is no measurement
    assert usage.millicores(after, usage.Reading(cpu_ns=0, memory_bytes=0, at=110.0)) == 0


def sample(cpu: int, memory: int, gpu: int | None = None) -> workloads_pb2.ContainerUsage:
    result = workloads_pb2.ContainerUsage(cpu_millicores=cpu, memory_bytes=memory)
    if gpu is not None:
        result.gpu_utilization_percent = gpu
    return result


def test_only_a_sample_that_moved_is_significant() -> None:
    mib = 1024 * 1024
    written = sample(1000, 100 * mib)
    assert usage.significant(None, written)
    assert not usage.significant(written, sample(1040, 103 * mib))  # under 5 %
    assert usage.significant(written, sample(1060, 100 * mib))      # CPU over 5 %
    assert usage.significant(written, sample(1000, 106 * mib))      # memory over 5 %
    # near zero the floors hold: 2m -> 15m is no news
    assert not usage.significant(sample(2, 4 * mib), sample(15, 4 * mib + 500_000))
    assert usage.significant(sample(2, 4 * mib), sample(30, 4 * mib))
    assert usage.significant(sample(0, mib, gpu=50), sample(0, mib, gpu=60))
    assert not usage.significant(sample(0, mib, gpu=50), sample(0, mib, gpu=53))
    assert usage.significant(sample(0, mib), sample(0, mib, gpu=0))


def test_simulated_gpu_utilisation_reaches_the_node_status() -> None:
    nvml = SimulatedNVML(["A100-SXM4-80GB[util=70]", "A100-SXM4-80GB"], node="n1")
    snapshot = Inventory(nvml=nvml, simulated=True).read()
    assert [g.utilization_percent for g in snapshot.gpus] == [70, 0]
    status = nodestatus.build_status(snapshot, assignments={}, docker_error=None,
                                     previous=None, now=dt.datetime.now(dt.UTC))
    assert [g.utilization_percent for g in status.gpus] == [70, 0]
    # utilisation moves all the time: alone it is no reason to write the Node
    nvml.inject(1, "util=30")
    again = nodestatus.build_status(Inventory(nvml=nvml, simulated=True).read(),
                                    assignments={}, docker_error=None, previous=status,
                                    now=dt.datetime.now(dt.UTC))
    assert again.gpus[1].utilization_percent == 30
    assert nodestatus.comparable(again) == nodestatus.comparable(status)


def test_simulated_utilisation_is_a_percent() -> None:
    assert parse_fault("util=55") == ("util", 55)
    with pytest.raises(ValueError, match="0 to 100"):
        SimulatedNVML(["A100[util=120]"], node="n1")


def test_unsupported_utilisation_is_unknown() -> None:
    nvml = SimulatedNVML(["A100[unsupported]"], node="n1")
    assert Inventory(nvml=nvml, simulated=True).read().gpus[0].utilization_percent is None
