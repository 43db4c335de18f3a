"""Whether each GPU is fit to be given a container: NVML's health signals, read guarded.

A GPU with uncorrected ECC errors, a page retirement or row remapping waiting for
a reset (or a remapping that failed), or a critical Xid error gives wrong answers
or dies mid-run; the scheduler must stop giving it out, and the container already
on it must hear about it. NVML tells all of this, but not every function exists on
every GPU and driver (a GeForce has no ECC, pre-Ampere boards have no row
remapper, an old ``nvidia-ml-py`` lacks functions, a container runtime may expose
no event API). So every signal is read on its own and a failure of any kind only
makes that one signal *unknown* (named in ``GPUHealth.unknown``): an unknown
signal never makes a GPU unhealthy, and nothing here can make the agent crash.

Xid errors come only as events (``nvmlDeviceRegisterEvents`` for
``nvmlEventTypeXidCriticalError``, then ``nvmlEventSetWait_v2``), so
``XidWatcher`` waits for them in a daemon thread, as NVIDIA's Kubernetes device
plugin does, and remembers the critical ones per GPU UUID until the agent
restarts: a GPU that lost its bus once is not trusted again without a look by an
administrator (who restarts the agent after a reset). Application Xids (13, 31,
43, 45, 68, 109: a user's kernel faulted) are ignored, as the device plugin does.

Temperature and throttle reasons are reported, never judged: a hot GPU is slow,
not wrong.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pynvml

log = logging.getLogger(__name__)

HEALTHY, UNHEALTHY, UNKNOWN = "Healthy", "Unhealthy", "Unknown"

# Xids a user's program causes (a bad kernel, a killed context): not the GPU's fault.
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})

XID_MEANINGS = {
    48: "double-bit ECC error",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping failed",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}

# The bits of nvmlDeviceGetCurrentClocksThrottleReasons, by the names NVML's docs use.
THROTTLE_REASONS = (
    (0x1, "GpuIdle"), (0x2, "ApplicationsClocksSetting"), (0x4, "SwPowerCap"),
    (0x8, "HwSlowdown"), (0x10, "SyncBoost"), (0x20, "SwThermalSlowdown"),
    (0x40, "HwThermalSlowdown"), (0x80, "HwPowerBrakeSlowdown"),
    (0x100, "DisplayClockSetting"), (0x200, "BoardLimit"), (0x400, "Reliability"),
)

T = TypeVar("T")


@dataclass(frozen=True)
class GPUHealth:
    """One reading; ``None`` is a value NVML could not give (see ``unknown``)."""

    status: str = UNKNOWN
    reasons: tuple[str, ...] = ()
    ecc_uncorrected: int | None = None
    ecc_corrected: int | None = None
    retired_pages: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failed: bool | None = None
    xids: tuple[int, ...] = ()
    temperature_celsius: int | None = None
    throttle_reasons: tuple[str, ...] = ()
    unknown: tuple[str, ...] = field(default=())


def xid_text(xid: int) -> str:
    meaning = XID_MEANINGS.get(xid)
    return f"Xid {xid} ({meaning})" if meaning else f"Xid {xid}"


def judge(reading: GPUHealth) -> GPUHealth:
    """``reading`` with its ``status`` and ``reasons`` decided from its signals."""
    reasons: list[str] = []
    if reading.ecc_uncorrected:
        reasons.append(f"{reading.ecc_uncorrected} uncorrected ECC error(s)")
    if reading.retired_pages_pending:
        reasons.append("a page retirement waits for a GPU reset")
    if reading.remap_failed:
        reasons.append("a row remapping failed")
    elif reading.remap_pending:
        reasons.append("a row remapping waits for a GPU reset")
    reasons.extend(xid_text(x) for x in reading.xids)
    judged = (reading.ecc_uncorrected, reading.retired_pages_pending, reading.remap_pending,
              reading.temperature_celsius)
    if reasons:
        status = UNHEALTHY
    elif all(v is None for v in judged) and any(u.startswith("xid") for u in reading.unknown):
        status = UNKNOWN  # NVML told nothing at all about this GPU
    else:
        status = HEALTHY
    return dataclasses.replace(reading, status=status, reasons=tuple(reasons))


def _guarded(unknown: list[str], what: str, call: Callable[[], T]) -> T | None:
    """``call()``, or None with ``what`` noted as unknown when NVML cannot answer."""
    try:
        return call()
    except pynvml.NVMLError as exc:
        unknown.append(f"{what}: {exc}")
    except AttributeError:
        unknown.append(f"{what}: not in this NVML")
    except Exception as exc:  # a binding out of step with its driver: unknown, not fatal
        unknown.append(f"{what}: {type(exc).__name__}: {exc}")
    return None


def read(nvml: Any, handle: object, *, xids: Sequence[int] = (),
         xids_known: bool = True) -> GPUHealth:
    """Blocking: one health reading of the GPU behind ``handle``."""
    unknown: list[str] = []
    ecc_unc = _guarded(unknown, "ecc", lambda: int(nvml.nvmlDeviceGetTotalEccErrors(
        handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)))
    ecc_corr = None
    if ecc_unc is not None:
        ecc_corr = _guarded(unknown, "ecc corrected", lambda: int(nvml.nvmlDeviceGetTotalEccErrors(
            handle, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC)))
    retired = _guarded(unknown, "retired pages", lambda: sum(
        len(nvml.nvmlDeviceGetRetiredPages(handle, cause)) for cause in (
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)))
    pending = None
    if retired is not None:
        pending = _guarded(unknown, "retired pages pending", lambda: int(
            nvml.nvmlDeviceGetRetiredPagesPendingStatus(handle))
            == pynvml.NVML_FEATURE_ENABLED)
    remapped = _guarded(unknown, "remapped rows",
                        lambda: tuple(int(v) for v in nvml.nvmlDeviceGetRemappedRows(handle)))
    temperature = _guarded(unknown, "temperature", lambda: int(
        nvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)))
    throttle = _guarded(unknown, "throttle reasons", lambda: throttle_names(
        int(_throttle_call(nvml)(handle))))
    if not xids_known:
        unknown.append("xid: NVML's events are not available for this GPU")
    reading = GPUHealth(
        ecc_uncorrected=ecc_unc, ecc_corrected=ecc_corr, retired_pages=retired,
        retired_pages_pending=pending,
        remapped_rows_uncorrectable=remapped[1] if remapped else None,
        remap_pending=bool(remapped[2]) if remapped else None,
        remap_failed=bool(remapped[3]) if remapped else None,
        xids=tuple(xids), temperature_celsius=temperature,
        throttle_reasons=throttle or (), unknown=tuple(unknown),
    )
    return judge(reading)


def _throttle_call(nvml: Any) -> Callable[[object], int]:
    # Renamed "clocks event reasons" in newer NVML; the old name may go away.
    call = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    return call if call is not None else nvml.nvmlDeviceGetCurrentClocksThrottleReasons  # type: ignore[no-any-return]


def throttle_names(mask: int) -> tuple[str, ...]:
    """The names of the throttle reasons set in ``mask``; ``GpuIdle`` is no reason."""
    return tuple(name for bit, name in THROTTLE_REASONS if mask & bit and name != "GpuIdle")


class XidWatcher:
    """Waits for NVML's critical Xid events in a daemon thread; remembers them per GPU.

    ``start`` registers every GPU it is given; a GPU whose registration fails (or
    every GPU, when the event API is missing) is reported as not watched, so its
    Xids are *unknown* rather than silently "none".
    """

    WAIT_MS = 1000

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self._lock = threading.Lock()
        self._xids: dict[str, list[int]] = {}
        self._watched: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._set: object | None = None

    def start(self, handles: Iterable[tuple[str, object]]) -> None:
        """Register the GPUs (``(uuid, handle)``) and start waiting; once."""
        if self._thread is not None:
            return
        try:
            self._set = self.nvml.nvmlEventSetCreate()
        except Exception as exc:
            log.warning("NVML's event API is not available: Xid errors are unknown (%s)", exc)
            self._thread = threading.Thread()  # marks "started"; never run
            return
        for uuid, handle in handles:
            try:
                self.nvml.nvmlDeviceRegisterEvents(
                    handle, pynvml.nvmlEventTypeXidCriticalError, self._set)
            except Exception as exc:
                log.warning("cannot watch GPU %s for Xid errors: %s", uuid, exc)
                continue
            self._watched.add(uuid)
        self._thread = threading.Thread(target=self._run, name="nvml-xid-events", daemon=True)
        self._thread.start()

    def watched(self, uuid: str) -> bool:
        return uuid in self._watched

    def xids(self, uuid: str) -> tuple[int, ...]:
        with self._lock:
            return tuple(self._xids.get(uuid, ()))

    def record(self, uuid: str, xid: int) -> None:
        if xid in APPLICATION_XIDS:
            log.info("GPU %s: application %s (not the GPU's fault)", uuid, xid_text(xid))
            return
        with self._lock:
            seen = self._xids.setdefault(uuid, [])
            if xid not in seen:
                seen.append(xid)
                log.warning("GPU %s: critical %s: it gets no new container", uuid,
                            xid_text(xid))

    def stop(self, *, wait: bool = False) -> None:
        """Stop waiting for events: the thread ends within ``WAIT_MS`` (at once, with
        ``wait``, which blocks: not on the event loop)."""
        self._stop.set()
        thread = self._thread
        if wait and thread is not None and thread.is_alive():
            thread.join(timeout=self.WAIT_MS / 1000 * 3)

    def _run(self) -> None:
        wait = getattr(self.nvml, "nvmlEventSetWait_v2", None) or self.nvml.nvmlEventSetWait
        while not self._stop.is_set():
            try:
                data = wait(self._set, self.WAIT_MS)
            except pynvml.NVMLError as exc:
                if getattr(exc, "value", None) == pynvml.NVML_ERROR_TIMEOUT:
                    continue
                log.warning("waiting for NVML events failed, Xid errors are unknown now: %s",
                            exc)
                self._watched.clear()
                return
            except Exception as exc:
                log.warning("waiting for NVML events failed, Xid errors are unknown now: %s",
                            exc)
                self._watched.clear()
                return
            if not int(data.eventType) & pynvml.nvmlEventTypeXidCriticalError:
                continue
            try:
                raw = self.nvml.nvmlDeviceGetUUID(data.device)
                uuid = raw.decode() if isinstance(raw, bytes) else str(raw)
            except Exception as exc:
                log.warning("an Xid %d event for a GPU NVML cannot name: %s",
                            int(data.eventData), exc)
                continue
            self.record(uuid, int(data.eventData))
