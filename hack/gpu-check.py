#!/usr/bin/env python3
"""Print what the agent would report of this machine's GPUs: inventory and health.

Runs the agent's own code (``dora.agent.inventory`` and ``dora.agent.gpuhealth``)
against the real NVML, so on a GPU machine it shows exactly what a Node's status
will carry, and which NVML functions this GPU and driver do not answer
("unknown"). It also waits a few seconds for Xid events, which NVML only sends.

    .venv/bin/python hack/gpu-check.py                 # the real GPUs
    .venv/bin/python hack/gpu-check.py --wait 30       # listen for Xid events longer
    .venv/bin/python hack/gpu-check.py --simulate '2xA100-SXM4-80GB,1xA100-SXM4-80GB[xid=79]'

Exit status: 0 when every GPU is Healthy or Unknown, 1 when one is Unhealthy,
2 when there is no NVML (no driver) and nothing was simulated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dora.agent import inventory
from dora.agent.gpuhealth import UNHEALTHY


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=3.0,
                        help="seconds to listen for Xid events before the last reading")
    parser.add_argument("--simulate", default="",
                        help="a --simulate-gpus spec instead of the real NVML")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.simulate:
        try:
            products = inventory.parse_simulated(args.simulate)
        except ValueError as exc:
            parser.error(str(exc))
        nvml: inventory.NVML | None = inventory.SimulatedNVML(products, node="gpu-check")
    else:
        nvml = inventory.load_nvml()
        if nvml is None:
            print("no NVML here (no NVIDIA driver, or nvidia-ml-py cannot load it)",
                  file=sys.stderr)
            return 2
    reader = inventory.Inventory(nvml=nvml, simulated=bool(args.simulate))
    try:
        reader.read()  # registers for Xid events
        time.sleep(max(args.wait, 0))
        snapshot = reader.read()
    finally:
        reader.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(snapshot), indent=2))
    else:
        print(f"CPU {snapshot.cpu_model} x{snapshot.cpu_count}, "
              f"memory {snapshot.memory_bytes / 1024**3:.1f} GiB, {len(snapshot.gpus)} GPU(s)")
        for gpu in snapshot.gpus:
            h = gpu.health
            print(f"\nGPU {gpu.index} {gpu.product_name} {gpu.uuid}")
            print(f"  memory       {gpu.memory_used_bytes / 1024**3:.1f} / "
                  f"{gpu.memory_total_bytes / 1024**3:.1f} GiB")
            print(f"  health       {h.status}" + (f": {'; '.join(h.reasons)}" if h.reasons else ""))
            print(f"  ecc          uncorrected {_v(h.ecc_uncorrected)}, "
                  f"corrected {_v(h.ecc_corrected)} (volatile)")
            print(f"  retired      {_v(h.retired_pages)} page(s), "
                  f"pending {_v(h.retired_pages_pending)}")
            print(f"  remapping    uncorrectable rows {_v(h.remapped_rows_uncorrectable)}, "
                  f"pending {_v(h.remap_pending)}, failed {_v(h.remap_failed)}")
            print(f"  xids         {', '.join(map(str, h.xids)) or 'none'}")
            print(f"  temperature  {_v(h.temperature_celsius)} C")
            print(f"  throttling   {', '.join(h.throttle_reasons) or 'none'}")
            for item in h.unknown:
                print(f"  unknown      {item}")
    return 1 if any(g.health.status == UNHEALTHY for g in snapshot.gpus) else 0


def _v(value: object) -> str:
    return "unknown" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
