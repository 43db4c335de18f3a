"""``python -m bench.table [RESULTS...]``: the README's Markdown table from results files.

Each figure of ``bench/results.json`` (or of the files named, later ones replacing
earlier figures of the same name) becomes one row: figure, value, baseline measured in
the same run, ratio, target, met. What the README says around the table is written
by hand; the rows come from here, so they say exactly what the run measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.__main__ import RESULTS


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def row(figure: dict[str, Any]) -> str:
    baseline = figure.get("baseline") or {}
    base = (f"{baseline.get('what', '')}: {_number(baseline.get('value', ''))} "
            f"{baseline.get('unit', '')}").strip() if baseline else ""
    ratio = "" if figure.get("ratio") is None else f"{figure['ratio']:.2f}"
    cells = [figure["name"], f"{_number(figure['value'])} {figure['unit']}", base, ratio,
             figure["target"], "yes" if figure["met"] else "no"]
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def table(paths: list[Path]) -> str:
    figures: dict[str, dict[str, Any]] = {}
    for path in paths:
        for figure in json.loads(path.read_text()):
            figures[figure["name"]] = figure
    lines = ["| figure | value | baseline (same run) | ratio | target | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines.extend(row(f) for f in figures.values())
    return "\n".join(lines)


def main() -> None:
    paths = [Path(a) for a in sys.argv[1:]] or [RESULTS]
    sys.stdout.write(table(paths) + "\n")


if __name__ == "__main__":
    main()
