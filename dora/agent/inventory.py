"""What the node has: CPU model and cores, memory, GPUs.

GPUs come through NVML behind the ``NVML`` protocol. Its methods are named and
behave like the ``pynvml`` functions the agent calls, so the real implementation
*is* the ``pynvml`` module (``load_nvml``), and every line of ``read_gpus`` runs
the same against a test's fake (a DGX with 8 GPUs) and a real driver. The
``--simulate-gpus`` devices are a third implementation of the same protocol
(``SimulatedNVML``); the Node status says when they are what it reports.

Each GPU's health (ECC, retired pages, row remapping, Xid events, temperature,
throttling) is read through ``gpuhealth``, guarded: what a GPU or driver cannot
tell is *unknown*, never an error. Simulated GPUs take injected faults, in the
``--simulate-gpus`` spec (``1xA100-SXM4-80GB[xid=79]``) or at run time through
``SimulatedNVML.inject``, so an unhealthy GPU can be tested on a machine without any.

Everything here blocks (files, NVML): the agent calls ``Inventory.read`` in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import pynvml

from dora.agent import gpuhealth
from dora.agent.gpuhealth import GPUHealth

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
    health: GPUHealth = field(default_factory=GPUHealth)
    # NVML's utilisation (percent of the last period a kernel ran); None: unknown.
    utilization_percent: int | None = None


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


def read_gpus(nvml: NVML, *, xids: gpuhealth.XidWatcher | None = None) -> tuple[GPU, ...]:
    """Every GPU with its health; ``xids`` (started here on first use) knows their Xids."""
    found = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        found.append((index, handle, _text(nvml.nvmlDeviceGetUUID(handle))))
    if xids is not None:
        xids.start((gpu_uuid, handle) for _, handle, gpu_uuid in found)
    gpus = []
    for index, handle, gpu_uuid in found:
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        gpus.append(GPU(
            index=index,
            uuid=gpu_uuid,
            product_name=_text(nvml.nvmlDeviceGetName(handle)),
            memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.used),
            health=gpuhealth.read(
                nvml, handle, xids=xids.xids(gpu_uuid) if xids is not None else (),
                xids_known=xids is not None and xids.watched(gpu_uuid)),
            utilization_percent=read_utilization(nvml, handle),
        ))
    return tuple(gpus)


def read_utilization(nvml: NVML, handle: object) -> int | None:
    """``nvmlDeviceGetUtilizationRates(handle).gpu``; None where NVML cannot tell (not
    every GPU or binding has it)."""
    call = getattr(nvml, "nvmlDeviceGetUtilizationRates", None)
    if call is None:
        return None
    try:
        return int(call(handle).gpu)
    except (pynvml.NVMLError, AttributeError, TypeError, ValueError):
        return None


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
        self.xids = gpuhealth.XidWatcher(nvml) if nvml is not None else None
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
        gpus = read_gpus(self.nvml, xids=self.xids) if self.nvml is not None else ()
        return Snapshot(
            cpu_model=model, cpu_count=count, memory_bytes=memory,
            gpus=gpus, simulated_gpus=self.simulated and bool(gpus),
        )

    def close(self) -> None:
        """Stop waiting for NVML's events (does not block; the thread ends within a
        second)."""
        if self.xids is not None:
            self.xids.stop()


@dataclass(frozen=True)
class _SimulatedMemory:
    total: int
    used: int = 0


@dataclass(frozen=True)
class _SimulatedUtilization:
    gpu: int
    memory: int = 0


# What can go wrong with a simulated GPU, as written in a spec: a critical Xid
# (delivered as an NVML event), uncorrected ECC errors, a page retirement or a row
# remapping waiting for a reset, a failed remapping, a temperature, a throttle
# reason bit mask (0x40: HwThermalSlowdown), NVML answering Not Supported to all;
# and, not a fault, the utilisation it reports in percent (0 by default).
FAULTS = ("xid=N", "ecc=N", "retired-pending", "remap-pending", "remap-failed", "temp=N",
          "throttle=MASK", "unsupported", "util=N")
_NAMES = {f.partition("=")[0]: bool(f.partition("=")[2]) for f in FAULTS}


def parse_fault(text: str) -> tuple[str, int]:
    """``"xid=79"`` -> ``("xid", 79)``; ``"remap-failed"`` -> ``("remap-failed", 1)``."""
    name, _, value = text.strip().partition("=")
    name = name.strip().lower()
    if name not in _NAMES:
        raise ValueError(f"unknown simulated GPU fault {text.strip()!r}: expected one of "
                         + ", ".join(FAULTS))
    if _NAMES[name]:
        try:
            return name, int(value.strip(), 0)
        except ValueError:
            raise ValueError(f"simulated GPU fault {text.strip()!r}: {name} needs a number "
                             f"({name}=N)") from None
    if value:
        raise ValueError(f"simulated GPU fault {text.strip()!r}: {name} takes no value")
    return name, 1


@dataclass
class _SimulatedHealth:
    ecc: int = 0
    retired_pending: bool = False
    remap_pending: bool = False
    remap_failed: bool = False
    temperature: int = 40
    throttle: int = 0
    unsupported: bool = False
    utilization: int = 0


@dataclass(frozen=True)
class _SimulatedEvent:
    device: object
    eventType: int
    eventData: int


def _split_faults(product: str) -> tuple[str, list[str]]:
    """``"A100[xid=79,ecc=1]"`` -> ``("A100", ["xid=79", "ecc=1"])``."""
    match = re.fullmatch(r"(?P<name>.*?)\s*\[(?P<faults>[^\]]*)\]\s*", product)
    if match is None:
        return product, []
    return match.group("name"), [f for f in match.group("faults").split(";") if f.strip()]


class SimulatedNVML:
    """Fake GPUs for ``--simulate-gpus``: they are advertised, never handed to Docker.

    Their health is NVML's, simulated: faults come from the spec (``[xid=79]`` after a
    product name) or from ``inject`` at run time, and an Xid is delivered through the
    same event API a real driver has, so the agent's code path is the real one.
    """

    def __init__(self, products: Sequence[str], *, node: str) -> None:
        split = [_split_faults(p) for p in products]
        self.products = tuple(name for name, _ in split)
        self.node = node
        self._health = [_SimulatedHealth() for _ in self.products]
        self._events: queue.Queue[_SimulatedEvent] = queue.Queue()
        self._lock = threading.Lock()
        for index, (_, faults) in enumerate(split):
            for fault in faults:
                self.inject(index, fault)

    def inject(self, index: int, fault: str) -> None:
        """Make simulated GPU ``index`` fail as ``fault`` says (one of ``FAULTS``)."""
        if not 0 <= index < len(self.products):
            raise IndexError(f"no simulated GPU {index}")
        name, number = parse_fault(fault)
        with self._lock:
            health = self._health[index]
            if name == "xid":
                self._events.put(_SimulatedEvent(
                    device=index, eventType=pynvml.nvmlEventTypeXidCriticalError,
                    eventData=number))
            elif name == "ecc":
                health.ecc += number
            elif name == "retired-pending":
                health.retired_pending = True
            elif name == "remap-pending":
                health.remap_pending = True
            elif name == "remap-failed":
                health.remap_failed = True
            elif name == "temp":
                health.temperature = number
            elif name == "throttle":
                health.throttle = number
            elif name == "util":
                if not 0 <= number <= 100:
                    raise ValueError(f"simulated GPU util={number}: a percent, 0 to 100")
                health.utilization = number
            else:
                health.unsupported = True

    def clear(self, index: int) -> None:
        """Undo the faults of GPU ``index`` (Xids already seen stay seen, as on a real node)."""
        with self._lock:
            self._health[index] = _SimulatedHealth()

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

    def _state(self, handle: object) -> _SimulatedHealth:
        with self._lock:
            health = self._health[cast(int, handle)]
        if health.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return health

    def nvmlDeviceGetTotalEccErrors(self, handle: object, error_type: int,
                                    counter_type: int) -> int:
        health = self._state(handle)
        return health.ecc if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED else 0

    def nvmlDeviceGetRetiredPages(self, handle: object, cause: int) -> list[int]:
        self._state(handle)
        return []

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: object) -> int:
        return int(self._state(handle).retired_pending)

    def nvmlDeviceGetRemappedRows(self, handle: object) -> tuple[int, int, int, int]:
        health = self._state(handle)
        bad = int(health.remap_pending or health.remap_failed)
        return 0, bad, int(health.remap_pending), int(health.remap_failed)

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> _SimulatedUtilization:
        return _SimulatedUtilization(gpu=self._state(handle).utilization)

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        return self._state(handle).temperature

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: object) -> int:
        return self._state(handle).throttle

    def nvmlEventSetCreate(self) -> object:
        return self._events

    def nvmlDeviceRegisterEvents(self, handle: object, event_types: int,
                                 event_set: object) -> None:
        if self._health[cast(int, handle)].unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlEventSetWait_v2(self, event_set: object, timeout_ms: int) -> _SimulatedEvent:
        try:
            return self._events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT) from None


_SIMULATED_ITEM = re.compile(r"^\s*(?:(?P<count>\d+)\s*x\s*)?(?P<name>\S.*?)\s*$")


def parse_simulated(spec: str) -> list[str]:
    """``"2xTesla V100-SXM2-16GB,1xA100-SXM4-80GB[xid=79]"`` -> one product per GPU.

    The count is optional (``"A100"`` is one GPU). Faults in brackets after a product
    (``;`` between several: ``[ecc=1;temp=90]``) stay on its name for ``SimulatedNVML``.
    Raises ``ValueError`` on nonsense.
    """
    products: list[str] = []
    for item in spec.split(","):
        match = _SIMULATED_ITEM.match(item)
        if match is None or re.fullmatch(r"\d+\s*x", match.group("name")):
            raise ValueError(
                f"bad --simulate-gpus item {item!r}: expected COUNTxPRODUCT NAME, "
                "e.g. '2xTesla V100-SXM2-16GB' or '1xA100-SXM4-80GB[xid=79]'"
            )
        count = int(match.group("count") or 1)
        if count < 1:
            raise ValueError(f"bad --simulate-gpus item {item!r}: the count must be >= 1")
        name, faults = _split_faults(match.group("name"))
        if not name or "[" in name or "]" in name:
            raise ValueError(f"bad --simulate-gpus item {item!r}: a product name, then "
                             "optionally its faults in brackets")
        for fault in faults:
            try:
                parse_fault(fault)
            except ValueError as exc:
                raise ValueError(f"bad --simulate-gpus item {item!r}: {exc}") from None
        products.extend([match.group("name")] * count)
    return products
