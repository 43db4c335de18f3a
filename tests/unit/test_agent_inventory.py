"""The node inventory: CPU and memory from /proc, GPUs through the NVML seam."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dora.agent import inventory
from dora.agent.inventory import NVML, Inventory, SimulatedNVML

GiB = 1024**3


@dataclass(frozen=True)
class _Memory:
    total: int
    used: int


class FakeDGX:
    """A DGX A100 as NVML sees it: 8 GPUs, some memory in use. Names come back as
    bytes, as older NVML bindings return them."""

    product = "NVIDIA A100-SXM4-80GB"

    def __init__(self, count: int = 8) -> None:
        self.count = count
        self.calls: list[str] = []

    def nvmlDeviceGetCount(self) -> int:
        self.calls.append("count")
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        return ("handle", index)

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        _, index = handle  # type: ignore[misc]
        return f"GPU-00000000-0000-0000-0000-00000000000{index}"

    def nvmlDeviceGetName(self, handle: object) -> bytes:
        return self.product.encode()

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> _Memory:
        _, index = handle  # type: ignore[misc]
        return _Memory(total=80 * GiB, used=index * GiB)


CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz
flags\t\t: fpu vme

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz
"""


def test_a_fake_dgx_reads_as_eight_gpus() -> None:
    nvml: NVML = FakeDGX()
    gpus = inventory.read_gpus(nvml)
    assert [g.index for g in gpus] == list(range(8))
    assert len({g.uuid for g in gpus}) == 8
    assert all(g.product_name == "NVIDIA A100-SXM4-80GB" for g in gpus)
    assert gpus[3].memory_total_bytes == 80 * GiB
    assert gpus[3].memory_used_bytes == 3 * GiB


def test_cpu_model_and_cores_and_memory_come_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    (tmp_path / "meminfo").write_text("MemTotal:       16318412 kB\nMemFree: 1 kB\n")
    snapshot = Inventory(nvml=FakeDGX(), cpuinfo=tmp_path / "cpuinfo",
                         meminfo=tmp_path / "meminfo").read()
    assert snapshot.cpu_model == "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz"
    assert snapshot.cpu_count == 2
    assert snapshot.memory_bytes == 16318412 * 1024
    assert len(snapshot.gpus) == 8
    assert not snapshot.simulated_gpus


def test_the_cpu_model_is_model_name_not_the_model_number(tmp_path: Path) -> None:
    # As x86 kernels print it: "model" (a number) comes before "model name".
    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8168 CPU @ 2.70GHz\nstepping\t: 4\n")
    assert inventory.read_cpu(tmp_path / "cpuinfo") == (
        "Intel(R) Xeon(R) Platinum 8168 CPU @ 2.70GHz", 1)
    # Some ARM kernels: a "Model" that is a name, no "model name".
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nprocessor\t: 1\n"
                                      "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert inventory.read_cpu(tmp_path / "cpuinfo") == ("Raspberry Pi 4 Model B Rev 1.4", 2)
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel\t\t: 85\n")
    assert inventory.read_cpu(tmp_path / "cpuinfo")[0] == "unknown"


def test_this_machine_has_a_cpu_and_memory() -> None:
    snapshot = Inventory(nvml=None).read()
    assert snapshot.cpu_model and snapshot.cpu_count >= 1
    assert snapshot.memory_bytes > 0
    assert snapshot.gpus == ()


def test_real_nvml_is_none_without_a_driver_or_reads_the_gpus() -> None:
    nvml = inventory.load_nvml()
    if nvml is not None:  # a GPU machine: the real thing goes through the same code
        gpus = inventory.read_gpus(nvml)
        assert all(g.uuid.startswith("GPU-") for g in gpus)


@pytest.mark.parametrize(
    ("spec", "products"),
    [
        ("2xTesla V100-SXM2-16GB", ["Tesla V100-SXM2-16GB"] * 2),
        ("A100", ["A100"]),
        ("1xA100-SXM4-80GB, 2 x Quadro RTX 6000",
         ["A100-SXM4-80GB", "Quadro RTX 6000", "Quadro RTX 6000"]),
    ],
)
def test_simulated_gpu_specs(spec: str, products: list[str]) -> None:
    assert inventory.parse_simulated(spec) == products


@pytest.mark.parametrize("spec", ["", "2x", "0xA100", "A100,,B"])
def test_bad_simulated_gpu_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="--simulate-gpus"):
        inventory.parse_simulated(spec)


def test_simulated_gpus_are_stable_per_node_and_marked_simulated() -> None:
    products = inventory.parse_simulated("2xTesla V100-SXM2-16GB")
    first = Inventory(nvml=SimulatedNVML(products, node="gpu-1"), simulated=True).read()
    again = Inventory(nvml=SimulatedNVML(products, node="gpu-1"), simulated=True).read()
    other = Inventory(nvml=SimulatedNVML(products, node="gpu-2"), simulated=True).read()
    assert first.simulated_gpus
    assert [g.uuid for g in first.gpus] == [g.uuid for g in again.gpus]
    assert not {g.uuid for g in first.gpus} & {g.uuid for g in other.gpus}
    assert first.gpus[0].memory_total_bytes == 16 * GiB
    assert first.gpus[1].product_name == "Tesla V100-SXM2-16GB"
