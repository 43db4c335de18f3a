"""GPU health through NVML: every signal read guarded, judged, reported, simulated."""

from __future__ import annotations

import datetime as dt
import time

import pynvml
import pytest

from dora.agent import gpuhealth, inventory, nodestatus
from dora.agent.gpuhealth import HEALTHY, UNHEALTHY, UNKNOWN, GPUHealth
from dora.agent.inventory import Inventory, SimulatedNVML
from tests.unit.test_agent_inventory import FakeDGX

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class PartialDriver(FakeDGX):
    """A GeForce-like GPU on an odd binding: no ECC (Not Supported), a row remapper
    query that raises what ctypes raises when a binding is out of step, no event API."""

    def nvmlDeviceGetTotalEccErrors(self, handle: object, error: int, counter: int) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetRemappedRows(self, handle: object) -> tuple[int, int, int, int]:
        raise TypeError("argument 2: wrong type")

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        return 71

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: object) -> int:
        return 0x1 | 0x4 | 0x40  # idle (no reason), SwPowerCap, HwThermalSlowdown


def eventually(check: object, *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"not true within {within}s")


def test_a_driver_without_health_functions_gives_unknown_never_an_error() -> None:
    snapshot = Inventory(nvml=FakeDGX(count=2)).read()
    health = snapshot.gpus[0].health
    assert health.status == UNKNOWN
    assert health.ecc_uncorrected is None and health.temperature_celsius is None
    assert "ecc: not in this NVML" in health.unknown
    assert any(u.startswith("xid:") for u in health.unknown)


def test_each_signal_fails_on_its_own() -> None:
    health = Inventory(nvml=PartialDriver(count=1)).read().gpus[0].health
    assert health.status == HEALTHY  # what could be read is fine; unknown is not unhealthy
    assert health.temperature_celsius == 71
    assert health.throttle_reasons == ("SwPowerCap", "HwThermalSlowdown")
    assert "ecc: Not Supported" in health.unknown
    assert "remapped rows: TypeError: argument 2: wrong type" in health.unknown
    assert health.remap_pending is None


@pytest.mark.parametrize(("reading", "reason"), [
    (GPUHealth(ecc_uncorrected=3), "3 uncorrected ECC error(s)"),
    (GPUHealth(ecc_uncorrected=0, retired_pages_pending=True),
     "a page retirement waits for a GPU reset"),
    (GPUHealth(remap_pending=True), "a row remapping waits for a GPU reset"),
    (GPUHealth(remap_pending=True, remap_failed=True), "a row remapping failed"),
    (GPUHealth(xids=(79,)), "Xid 79 (GPU has fallen off the bus)"),
    (GPUHealth(xids=(154,)), "Xid 154"),
])
def test_what_makes_a_gpu_unhealthy(reading: GPUHealth, reason: str) -> None:
    judged = gpuhealth.judge(reading)
    assert (judged.status, judged.reasons) == (UNHEALTHY, (reason,))


def test_heat_and_throttling_are_reported_not_judged() -> None:
    judged = gpuhealth.judge(GPUHealth(ecc_uncorrected=0, temperature_celsius=97,
                                       throttle_reasons=("HwThermalSlowdown",)))
    assert judged.status == HEALTHY


def test_simulated_faults_from_the_spec_and_at_run_time() -> None:
    products = inventory.parse_simulated("2xA100-SXM4-80GB,1xA100-SXM4-80GB[ecc=2;temp=90]")
    nvml = SimulatedNVML(products, node="n1")
    reader = Inventory(nvml=nvml, simulated=True)
    try:
        gpus = reader.read().gpus
        assert [g.product_name for g in gpus] == ["A100-SXM4-80GB"] * 3
        assert [g.health.status for g in gpus] == [HEALTHY, HEALTHY, UNHEALTHY]
        assert gpus[2].health.temperature_celsius == 90
        nvml.inject(0, "xid=79")
        nvml.inject(1, "xid=13")  # an application's fault: not the GPU's
        nvml.inject(1, "xid=48")
        eventually(lambda: len(reader.read().gpus[1].health.xids) == 1)
        gpus = reader.read().gpus
        assert gpus[0].health.xids == (79,)
        assert gpus[0].health.reasons == ("Xid 79 (GPU has fallen off the bus)",)
        assert gpus[1].health.xids == (48,)
        nvml.clear(2)
        assert reader.read().gpus[2].health.status == HEALTHY
        nvml.clear(0)
        assert reader.read().gpus[0].health.status == UNHEALTHY, "an Xid is not forgotten"
        nvml.inject(2, "unsupported")
        assert reader.read().gpus[2].health.ecc_uncorrected is None
    finally:
        reader.close()


@pytest.mark.parametrize(("spec", "error"), [
    ("1xA100[bogus]", "unknown simulated GPU fault 'bogus'"),
    ("1xA100[xid]", "xid needs a number"),
    ("1xA100[remap-failed=2]", "remap-failed takes no value"),
    ("1x[xid=79]", "a product name"),
])
def test_bad_faults_in_the_spec_are_named(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match="bad --simulate-gpus item") as caught:
        inventory.parse_simulated(spec)
    assert error in str(caught.value)


def test_the_node_status_carries_health_and_ignores_what_moves() -> None:
    nvml = SimulatedNVML(["A100", "A100[remap-failed]"], node="n1")
    reader = Inventory(nvml=nvml, simulated=True)
    try:
        first = nodestatus.build_status(reader.read(), assignments={}, docker_error=None,
                                        previous=None, now=NOW)
        assert [g.health.status for g in first.gpus] == [HEALTHY, UNHEALTHY]
        assert first.gpus[1].health.reasons == ["a row remapping failed"]
        assert first.gpus[0].health.HasField("ecc_uncorrected")
        nvml.inject(0, "temp=88")
        nvml.inject(0, "throttle=0x20")
        hotter = nodestatus.build_status(reader.read(), assignments={}, docker_error=None,
                                         previous=first, now=NOW)
        assert hotter.gpus[0].health.temperature_celsius == 88
        assert nodestatus.comparable(hotter) == nodestatus.comparable(first)
        nvml.inject(0, "ecc=1")
        broken = nodestatus.build_status(reader.read(), assignments={}, docker_error=None,
                                         previous=first, now=NOW)
        assert nodestatus.comparable(broken) != nodestatus.comparable(first)
    finally:
        reader.close()


def test_unknown_values_stay_unset_in_the_status() -> None:
    message = nodestatus.health_proto(gpuhealth.judge(GPUHealth(unknown=("xid: no events",))))
    assert message.status == UNKNOWN
    assert not message.HasField("ecc_uncorrected")
    assert not message.HasField("temperature_celsius")
