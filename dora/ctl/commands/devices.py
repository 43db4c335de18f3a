"""``doractl get gpus`` / ``get cpus``: what the zone's nodes offer, to choose from.

The seeds' ``CPU: [Get]`` and ``GPU: [Get]``: a user reads the devices through
the apiserver's ``Devices`` service (built from the Nodes' status), so they can
pick ``selectors.gpu.product_name`` values without any right on Node. HEALTH is
the agent's NVML reading (an Unhealthy GPU takes no new container); ``-o wide``
says why.
"""

from __future__ import annotations

import json
import sys

from google.protobuf import json_format

from dora.api.v1 import devices_pb2
from dora.ctl import humanize, printers, profiles, session
from dora.ctl.options import Output

WORDS = {"gpu": "GPU", "gpus": "GPU", "cpu": "CPU", "cpus": "CPU"}


def show(connection: profiles.Connection, word: str, output: Output, *, show_headers: bool) -> None:
    kind = WORDS[word.lower()]

    async def fetch(s: session.Session) -> devices_pb2.ListDevicesResponse:
        return await s.client.list_devices(kind, zone=s.connection.zone)

    response = session.run(connection, fetch)
    items = list(response.items)
    if output in (Output.json, Output.yaml, Output.name):
        data = [json_format.MessageToDict(d, preserving_proto_field_name=False) for d in items]
        if output is Output.name:
            sys.stdout.write("".join(f"{kind.lower()}/{d.node}/{d.index}\n" for d in items))
        elif output is Output.json:
            sys.stdout.write(json.dumps({"kind": "List", "items": data}, indent=2) + "\n")
        else:
            import yaml

            sys.stdout.write(yaml.safe_dump({"kind": "List", "items": data}, sort_keys=False))
        return
    wide = output is Output.wide
    if kind == "GPU":
        headers = (["NODE", "INDEX", "PRODUCT", "STATE", "HEALTH"]
                   + (["MEMORY", "UUID", "WHY"] if wide else []))
        rows = [[d.node, str(d.index), d.product_name, _gpu_state(d), d.health or "Unknown"]
                + ([humanize.size(d.memory_total_bytes), d.uuid,
                    "; ".join(d.health_reasons)] if wide else [])
                for d in items]
    else:
        headers = ["NODE", "PRODUCT", "CORES", "FREE"] + (["MEMORY"] if wide else [])
        rows = [[d.node, d.product_name, str(d.count),
                 f"{max(d.count * 1000 - d.used_millicores, 0)}m"]
                + ([humanize.size(d.memory_total_bytes)] if wide else [])
                for d in items]
    if not rows:
        print(f"No {kind}s found in zone {response.zone}.", file=sys.stderr)
        return
    printers.print_table(headers, rows, show_headers=show_headers)


def _gpu_state(device: devices_pb2.Device) -> str:
    if device.node_phase and device.node_phase != "Ready":
        return device.node_phase
    if not device.in_use:
        return "Free"
    return f"InUse ({device.container})" if device.container else "InUse"
