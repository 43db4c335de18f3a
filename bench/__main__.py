"""``python -m bench [--quick] [--only NAME]``: run, print, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import apiserver, cluster
from bench.figures import Figure

RESULTS = Path(__file__).parent / "results.json"


@dataclass(frozen=True)
class Sizes:
    seconds: float
    objects: int
    watchers: int
    writes: int


SIZES = {
    "full": Sizes(seconds=10, objects=10_000, watchers=1_000, writes=30),
    "quick": Sizes(seconds=3, objects=1_000, watchers=200, writes=10),
    # Only proves the harness runs (the test suite uses it); its figures mean nothing.
    "smoke": Sizes(seconds=0.3, objects=20, watchers=5, writes=2),
}


async def run(sizes: Sizes) -> list[Figure]:
    figures: list[Figure] = []
    async with cluster.running() as running:
        figures.append(await apiserver.apply_throughput(
            running, workers=16, seconds=sizes.seconds))
        figures.extend(await apiserver.get_and_list(
            running, objects=sizes.objects, seconds=sizes.seconds, workers=16))
        figures.append(await apiserver.watch_fanout(
            running, watchers=sizes.watchers, writes=sizes.writes))
    return figures


def report(figures: list[Figure]) -> None:
    table = Table(title="Dora benchmarks")
    for column in ("figure", "value", "baseline", "ratio", "target", "met"):
        table.add_column(column)
    for f in figures:
        baseline = f"{f.baseline.get('value')} {f.baseline.get('unit', '')}" if f.baseline else ""
        table.add_row(f.name, f"{f.value} {f.unit}", baseline,
                      "" if f.ratio is None else f"{f.ratio:.2f}", f.target,
                      "yes" if f.met else "NO")
    console = Console()
    console.print(table)
    for f in figures:
        if f.notes:
            console.print(f"[dim]{f.name}: {f.notes}[/dim]")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_const", const="quick", dest="size",
                        help="small sizes, under 2 minutes")
    parser.add_argument("--smoke", action="store_const", const="smoke", dest="size",
                        help="tiny sizes: only checks that everything runs")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    size = args.size or ("quick" if os.environ.get("DORA_BENCH_QUICK") == "1" else "full")
    figures = asyncio.run(run(SIZES[size]))
    args.output.write_text(json.dumps([f.as_json() for f in figures], indent=2) + "\n")
    report(figures)


if __name__ == "__main__":
    main()
