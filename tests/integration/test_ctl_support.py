"""Running the real ``doractl`` against the in-process apiserver, for the test_ctl_* files.

``Ctl(...)`` runs the CLI in this process (``dora.ctl.main.run`` in a worker thread,
under click's ``CliRunner`` isolation: its own stdin, stdout and stderr, which are no
terminal, so tables are plain; its own ``asyncio.run``; the exit code ``run`` returns),
which costs milliseconds where a new interpreter costs a second. ``Ctl(...,
subprocess=True)`` and ``start`` (a CLI that keeps running: watches, Ctrl-C) run
``python -m dora.ctl`` as users do: the smoke tests of the real program (as do
``exec`` and ``shell``, which use file descriptors 0-2 directly). Either way
the apiserver, which lives on the test's event loop, keeps serving meanwhile, and the
CLI finds it and the admin token in a profile file of the test's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from dora.ctl import main as ctl_main
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

    def __init__(self, *, server: str, token: str, home: Path,
                 subprocess: bool = False) -> None:
        self.subprocess = subprocess
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
        if not self.subprocess and args[:1] not in FD_LEVEL:
            return await asyncio.wait_for(
                asyncio.to_thread(self._in_process, args, input, env or {}), LIMIT)
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

    def _in_process(self, args: tuple[str, ...], input: str | None,
                    env: Mapping[str, str]) -> Result:
        """One CLI call at a time (the isolation swaps process-wide streams and
        environment), with the environment the subprocess would get."""
        overrides: dict[str, str | None] = {k: None for k in os.environ
                                            if k.startswith("DORA_")}
        overrides.update(self.env)
        overrides.update(env)
        with _IN_PROCESS, CliRunner().isolation(input=input, env=overrides) as streams:
            code = ctl_main.run(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
            out, err = streams[0].getvalue(), streams[1].getvalue()
        return Result(code, out.decode(), err.decode())

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


_IN_PROCESS = threading.Lock()
# Commands that read and write file descriptors 0, 1 and 2 themselves (a remote
# process's streams, raw terminals): no in-process isolation can hold them, so they
# always run as a subprocess.
FD_LEVEL = {("exec",), ("shell",)}


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
