"""The benchmark harness runs and writes figures a script can check (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIELDS = {"name", "value", "unit", "baseline", "ratio", "target", "met"}


def test_bench_smoke_run_writes_valid_results(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
                   check=True, capture_output=True, timeout=110)
    figures = json.loads(output.read_text())
    assert len(figures) >= 4
    for figure in figures:
        assert figure.keys() >= FIELDS, figure
        assert isinstance(figure["met"], bool)
        assert isinstance(figure["value"], int | float)
