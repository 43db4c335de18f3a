"""``--metrics-listen HOST:PORT``: ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP.

A thread of its own (``http.server``), not the daemon's event loop: a scrape must
answer while the loop is busy, and a loop that is stuck should show as such in
``/healthz`` (the checks read flags the loop sets, they never await it). Health is
"the process works"; readiness is "send it work": for the controllers, informers
synced, and which of leader or standby it is (both ready: a standby is healthy).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import prometheus_client

# A check answers (ok, one line of text for the body).
Check = Callable[[], tuple[bool, str]]


def always_ok() -> tuple[bool, str]:
    return True, "ok"


@dataclass
class Endpoint:
    """The HTTP server, started by ``start`` and stopped by ``stop``."""

    host: str
    port: int
    healthz: Check = always_ok
    readyz: Check = always_ok
    registry: prometheus_client.CollectorRegistry = field(
        default_factory=lambda: prometheus_client.REGISTRY)
    _server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = prometheus_client.generate_latest(endpoint.registry)
                    self._send(200, body, prometheus_client.CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, text = (endpoint.healthz if path == "/healthz" else endpoint.readyz)()
                    self._send(200 if ok else 503, (text + "\n").encode(), "text/plain")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the daemon's log

        self._server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="metrics-endpoint",
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:9100`` listens on every address) for ``--metrics-listen``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-listen {text!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)
