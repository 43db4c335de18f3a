"""``python -m bench.watchers``: one client process of the watch fan-out benchmark.

A thousand watchers are normally a thousand clients, not one Python process parsing
a thousand streams: the benchmark spreads its watchers over a few of these
processes, each with its own connection. Each one opens ``--watchers`` watches of
the Workloads from ``--version``, prints ``ready`` once every one of them got the
warm-up write (so every stream is open), and after ``--events`` events on each
prints the arrivals as JSON: ``[name, time.monotonic()]`` pairs. CLOCK_MONOTONIC is
one clock for every process of the machine, so the writer compares them with its
own send times. The token comes from ``DORA_BENCH_TOKEN`` (not the command line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from dora.api.client import Client


async def watch(*, target: str, token: str, version: int, watchers: int, events: int,
                warmup: str) -> list[tuple[str, float]]:
    arrivals: list[tuple[str, float]] = []
    ready = asyncio.Event()
    finished = asyncio.Event()
    subscribed = done = 0
    async with Client(target, token=token) as client:

        async def watcher() -> None:
            nonlocal subscribed, done
            stream = client.watch("Workload", resource_version=version)
            seen = 0
            async for event in stream:
                name = event.object.metadata.name
                arrivals.append((name, time.monotonic()))
                seen += 1
                if name == warmup:
                    subscribed += 1
                    if subscribed == watchers:
                        ready.set()
                if seen == events:
                    break
            # Streams close once every watcher has the last write: closing a
            # thousand streams would hold up its delivery to the others.
            done += 1
            if done == watchers:
                finished.set()
            await finished.wait()
            await stream.aclose()  # type: ignore[attr-defined]

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        await ready.wait()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.gather(*tasks)
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.watchers")
    parser.add_argument("--target", required=True)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--watchers", type=int, required=True)
    parser.add_argument("--events", type=int, required=True,
                        help="events each watcher waits for, the warm-up write included")
    parser.add_argument("--warmup", required=True, help="name of the warm-up write")
    args = parser.parse_args()
    arrivals = asyncio.run(watch(
        target=args.target, token=os.environ["DORA_BENCH_TOKEN"], version=args.version,
        watchers=args.watchers, events=args.events, warmup=args.warmup))
    sys.stdout.write(json.dumps(arrivals) + "\n")


if __name__ == "__main__":
    main()
