"""Running the real ``doractl`` against the in-process apiserver, for the test_ctl_* files.

The CLI runs in a subprocess (``python -m dora.ctl``), as users run it: its own
``asyncio.run``, stdout a pipe (so tables are plain), exit codes as they are.
Subprocesses are awaited with asyncio so the apiserver, which lives on the test's
event loop, keeps serving meanwhile. The CLI finds the apiserver and the admin
token in a profile file of the test's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dora.ctl import profiles

# The longest one doractl call may take before the test fails (not a timing test:
# a hang must fail, not stall the suite).
LIMIT = 60.0
ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "data" / "seeds"

# The zones and workspaces the seed files name, which must exist before their objects.
SEED_SCOPES = """\
kind: Zone
metadata: {name: dc-rov-01}
---
kind: Zone
metadata: {name: dora-cluster-1}
---
kind: Workspace
metadata: {name: amedeo.setti}
---
kind: Workspace
metadata: {name: datasets}
"""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class Ctl:
    """doractl with a profile like the one ``make up`` writes: a current context with the
    server, the admin token and the default zone and workspace."""

    def __init__(self, *, server: str, token: str, home: Path) -> None:
        self.config = home / "config.yaml"
        profiles.save(profiles.Profiles(
            contexts={"test": profiles.Context("test", endpoint=server, token=token,
                                               zone="default", workspace="default")},
            current_context="test",
        ), self.config)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DORA_")}
        self.env.update(DORA_CONFIG=str(self.config), HOME=str(home), COLUMNS="200")

    def _command(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "dora.ctl", *args]

    async def __call__(self, *args: str, input: str | None = None,
                       env: Mapping[str, str] | None = None) -> Result:
        process = await asyncio.create_subprocess_exec(
            *self._command(args), cwd=ROOT, env={**self.env, **(env or {})},
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            process.communicate(input.encode() if input is not None else None), LIMIT
        )
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, input: str | None = None) -> Result:
        """Run and require success: the failure message shows what the CLI said."""
        result = await self(*args, input=input)
        assert result.code == 0, f"doractl {' '.join(args)} -> {result}"
        return result

    async def start(self, *args: str) -> Background:
        process = await asyncio.create_subprocess_exec(
            *self._command(args), cwd=ROOT, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return Background(process)


class Background:
    """A doractl still running (``get --watch``, ``delete --wait``)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), LIMIT)
        line = raw.decode().rstrip("\n")
        self.seen.append(line)
        return line

    async def finish(self) -> Result:
        try:
            out, err = await asyncio.wait_for(self.process.communicate(), LIMIT)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return Result(self.process.returncode, "\n".join([*self.seen, out.decode()]).lstrip("\n"),
                      err.decode())

    def interrupt(self) -> None:
        """Ctrl-C."""
        self.process.send_signal(signal.SIGINT)

    def running(self) -> bool:
        return self.process.returncode is None


def words(line: str) -> list[str]:
    """The cells of a plain table row (cells hold no run of three spaces)."""
    return [cell.strip() for cell in line.split("   ") if cell.strip()]


def table(result: Result) -> list[dict[str, str]]:
    """A plain table as one mapping per row, by header."""
    header, *rows = result.lines
    names = words(header)
    starts: list[int] = []
    for name in names:
        starts.append(header.index(name, starts[-1] + 1 if starts else 0))
    parsed = []
    for row in rows:
        cells = [row[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        parsed.append(dict(zip(names, cells, strict=True)))
    return parsed
