"""``dora-web`` run as its own process, as ``make up`` runs it, for the browser and
API tests: on a free port, against the test's apiserver."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.integration.etcd import free_port

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"


@dataclass(frozen=True)
class Gateway:
    url: str
    port: int
    log: Path
    pid: int

    def rss_kib(self) -> int:
        """The process's resident memory now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")


@contextlib.contextmanager
def running_gateway(apiserver_port: int, log: Path, *, static_dir: Path = DIST,
                    port: int = 0) -> Iterator[Gateway]:
    """``dora-web`` on ``port`` (a free one when 0) until the block ends."""
    port = port or free_port()
    command = [sys.executable, "-m", "dora.web.main", "--server",
               f"127.0.0.1:{apiserver_port}", "--listen", f"127.0.0.1:{port}",
               "--static-dir", str(static_dir), "--log-level", "warning"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"dora-web exited at start:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"dora-web did not listen:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield Gateway(f"http://127.0.0.1:{port}", port, log, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
