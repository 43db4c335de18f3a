"""What the node has: CPU model and cores, memory, GPUs.

GPUs come through NVML behind the ``NVML`` protocol. Its methods are named and
behave like the ``pynvml`` functions the agent calls, so the real implementation
*is* the ``pynvml`` module (``load_nvml``), and every line of ``read_gpus`` runs
the same against a test's fake (a DGX with 8 GPUs) and a real driver. The
``--simulate-gpus`` devices are a third implementation of the same protocol
(``SimulatedNVML``); the Node status says when they are what it reports.

Everything here blocks (files, NVML): the agent calls ``Inventory.read`` in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import pynvml

log = logging.getLogger(__name__)

# UUIDs of simulated GPUs derive from the node name and the index, so they stay the
# same across agent restarts and the scheduler's assignments stay valid.
_SIMULATED_NAMESPACE = uuid.UUID("5b0c3f5e-4a36-4d0c-9d3b-8f1c2b7e6a10")
_DEFAULT_SIMULATED_MEMORY = 16 * 1024**3


class MemoryInfo(Protocol):
    @property
    def total(self) -> int: ...

    @property
    def used(self) -> int: ...


class NVML(Protocol):
    """The part of NVML the agent uses, named as in ``pynvml``. Handles are opaque."""

    def nvmlDeviceGetCount(self) -> int: ...

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object: ...

    def nvmlDeviceGetUUID(self, handle: object) -> str | bytes: ...

    def nvmlDeviceGetName(self, handle: object) -> str | bytes: ...

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> MemoryInfo: ...


@dataclass(frozen=True)
class GPU:
    index: int
    uuid: str
    product_name: str
    memory_total_bytes: int
    memory_used_bytes: int


@dataclass(frozen=True)
class Snapshot:
    """One reading of the node's hardware."""

    cpu_model: str
    cpu_count: int
    memory_bytes: int
    gpus: tuple[GPU, ...]
    simulated_gpus: bool


def load_nvml() -> NVML | None:
    """The real NVML, initialised; None where there is no NVIDIA driver."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.info("no NVIDIA GPUs on this node: NVML is not available (%s)", exc)
        return None
    return cast(NVML, pynvml)


def _text(value: str | bytes) -> str:
    # nvidia-ml-py returns str; older bindings returned bytes.
    return value.decode() if isinstance(value, bytes) else value


def read_gpus(nvml: NVML) -> tuple[GPU, ...]:
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        gpus.append(GPU(
            index=index,
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            product_name=_text(nvml.nvmlDeviceGetName(handle)),
            memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.used),
        ))
    return tuple(gpus)


def read_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, int]:
    """The CPU model (as seed 004 prints it) and the number of logical cores."""
    count = 0
    found: dict[str, str] = {}
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        field, _, value = line.partition(":")
        field = field.strip().lower()
        if field == "processor":
            count += 1
        elif field in _MODEL_FIELDS and field not in found:
            found[field] = " ".join(value.split())
    # x86 says "model name" (its "model", which comes first, is a number: "85");
    # some ARM kernels say "Model" (a name there) or "Hardware".
    names = [found.get(f, "") for f in _MODEL_FIELDS]
    model = next((n for n in names if n and not n.isdigit()), "")
    return model or "unknown", count or os.cpu_count() or 1


# The fields that name the CPU, best first.
_MODEL_FIELDS = ("model name", "cpu model", "model", "hardware")


def read_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Total memory in bytes."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Inventory:
    """Reads the node's hardware; NVML (real, fake or simulated) is passed in."""

    def __init__(
        self,
        *,
        nvml: NVML | None,
        simulated: bool = False,
        cpuinfo: Path = Path("/proc/cpuinfo"),
        meminfo: Path = Path("/proc/meminfo"),
    ) -> None:
        self.nvml = nvml
        self.simulated = simulated
        self._cpuinfo = cpuinfo
        self._meminfo = meminfo
        self._static: tuple[str, int, int] | None = None

    def read(self) -> Snapshot:
        """Blocking: call it in a worker thread. CPU and memory are read once (a
        /proc/cpuinfo of a big machine is large, and they do not change); GPUs, whose
        memory use does, every time."""
        if self._static is None:
            model, count = read_cpu(self._cpuinfo)
            self._static = (model, count, read_memory(self._meminfo))
        model, count, memory = self._static
        gpus = read_gpus(self.nvml) if self.nvml is not None else ()
        return Snapshot(
            cpu_model=model, cpu_count=count, memory_bytes=memory,
            gpus=gpus, simulated_gpus=self.simulated and bool(gpus),
        )


@dataclass(frozen=True)
class _SimulatedMemory:
    total: int
    used: int = 0


class SimulatedNVML:
    """Fake GPUs for ``--simulate-gpus``: they are advertised, never handed to Docker."""

    def __init__(self, products: Sequence[str], *, node: str) -> None:
        self.products = tuple(products)
        self.node = node

    def nvmlDeviceGetCount(self) -> int:
        return len(self.products)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        if not 0 <= index < len(self.products):
            raise IndexError(f"no simulated GPU {index}")
        return index

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        return f"GPU-{uuid.uuid5(_SIMULATED_NAMESPACE, f'{self.node}/{handle}')}"

    def nvmlDeviceGetName(self, handle: object) -> str:
        return self.products[cast(int, handle)]

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> MemoryInfo:
        match = re.search(r"(\d+)\s*GB", self.products[cast(int, handle)], re.IGNORECASE)
        total = int(match.group(1)) * 1024**3 if match else _DEFAULT_SIMULATED_MEMORY
        return _SimulatedMemory(total=total)


_SIMULATED_ITEM = re.compile(r"^\s*(?:(?P<count>\d+)\s*x\s*)?(?P<name>\S.*?)\s*$")


def parse_simulated(spec: str) -> list[str]:
    """``"2xTesla V100-SXM2-16GB,1xA100-SXM4-80GB"`` -> one product name per GPU.

    The count is optional (``"A100"`` is one GPU). Raises ``ValueError`` on nonsense.
    """
    products: list[str] = []
    for item in spec.split(","):
        match = _SIMULATED_ITEM.match(item)
        if match is None or re.fullmatch(r"\d+\s*x", match.group("name")):
            raise ValueError(
                f"bad --simulate-gpus item {item!r}: expected COUNTxPRODUCT NAME, "
                "e.g. '2xTesla V100-SXM2-16GB'"
            )
        count = int(match.group("count") or 1)
        if count < 1:
            raise ValueError(f"bad --simulate-gpus item {item!r}: the count must be >= 1")
        products.extend([match.group("name")] * count)
    return products
