"""``dora-desktop`` (``doractl ui``): the web app on the user's own machine, signed in
from their doractl profiles, keeping their sync folders live.

    dora-desktop [--port N] [--no-browser] [--context NAME]

It serves the same page and API as ``dora-web`` on ``127.0.0.1`` only, with the
token of the chosen context of ``~/.dora/config.yaml`` (the file ``doractl``
uses): the server puts it on every API call and on the terminal's first frame,
and the page never sees it. The navbar's context menu switches contexts (each
one its own connection, so contexts may name different apiservers).

Another local user, or a web page the user visits, must not drive it: it
answers only requests for a loopback Host (no DNS rebinding), and only with the
per-run secret: the URL it opens carries it once (``/?secret=...``), the answer
sets it as an ``HttpOnly``, ``SameSite=Strict`` cookie and redirects to ``/``;
any other request without that cookie is refused with 403. ``dora-web``'s
Origin checks and headers stay in front. It serves the built page and the API,
never a local file: the sync folders are only read, to send them to volumes.

Sync folders (``dora.web.desktopsync``) are kept in ``~/.dora/desktop.yaml`` and
their states reach the page as Server-Sent Events (``GET /api/desktop/events``).
Ctrl-C stops the server and every sync.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import sys
import webbrowser
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dora.api import errors, profiles
from dora.api.client import Client
from dora.web import app as webapp
from dora.web import desktopsync, http, security
from dora.web.main import DEFAULT_DIST
from dora.web.streams import PING_SECONDS

COOKIE = "dora_desktop"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class Desktop:
    """The run's state: the profiles, the context in use, one connection per context,
    and the syncs."""

    def __init__(self, *, profiles_path: Path, context: str, store: desktopsync.Store) -> None:
        self.profiles_path = profiles_path
        self.profiles = profiles.load(profiles_path)
        if not self.profiles.contexts:
            raise errors.DoraError(
                f"no contexts in {profiles_path}: create one with `doractl config "
                "set-context NAME --server HOST:PORT --token TOKEN`")
        self.context = context or self.profiles.current_context or \
            sorted(self.profiles.contexts)[0]
        self.connection(self.context)  # an unknown context fails now, not in the page
        self.clients: dict[str, Client] = {}
        self.manager = desktopsync.Manager(store, self.client_for)

    def reload(self) -> None:
        """Read the profile file again: a context added or a token renewed with
        ``doractl config`` while this runs shows in the menu and is used."""
        self.profiles = profiles.load(self.profiles_path)
        if self.context not in self.profiles.contexts:
            raise errors.NotFound(f"the context {self.context!r} left {self.profiles_path}")

    def connection(self, context: str) -> profiles.Connection:
        # The environment's DORA_SERVER/DORA_TOKEN would make every context the same.
        return profiles.resolve(self.profiles, context=context, environ={})

    async def client_for(self, context: str) -> Client:
        """The context's connection, with its token, opened once."""
        if context not in self.clients:
            conn = self.connection(context)
            self.clients[context] = Client(conn.target, token=conn.token or None,
                                           root_certificates=conn.root_certificates(),
                                           tls=conn.tls)
        return self.clients[context]

    @property
    def token(self) -> str:
        return self.connection(self.context).token

    async def close(self) -> None:
        await self.manager.stop()
        for client in self.clients.values():
            await client.close()


def _desktop(request: Request) -> Desktop:
    desktop: Desktop = request.app.state.desktop
    return desktop


async def describe(request: Request) -> Response:
    d = _desktop(request)
    d.reload()
    conn = d.connection(d.context)
    return JSONResponse({
        "desktop": True, "context": d.context, "zone": conn.zone,
        "workspace": conn.workspace,
        "contexts": [{"name": c.name, "endpoint": c.endpoint, "zone": c.zone,
                      "workspace": c.workspace}
                     for c in sorted(d.profiles.contexts.values(), key=lambda c: c.name)],
    })


async def switch_context(request: Request) -> Response:
    d = _desktop(request)
    name = http.str_field(await http.json_body(request), "context")
    d.profiles = profiles.load(d.profiles_path)
    if name not in d.profiles.contexts:
        raise errors.NotFound(f"context {name!r} does not exist in {d.profiles_path}")
    d.context = name
    request.app.state.client = await d.client_for(name)
    return await describe(request)


def _key(d: Desktop, data: Any) -> desktopsync.Key:
    def word(name: str) -> str:
        value = data.get(name, "")
        if not isinstance(value, str):
            raise errors.Invalid("expected a string", field=name)
        return value

    workload = word("workload")
    if not workload:
        raise errors.Invalid("the workload is required", field="workload")
    return desktopsync.Key(d.context, word("zone"), word("workspace"), workload)


async def get_syncs(request: Request) -> Response:
    d = _desktop(request)
    key = _key(d, dict(request.query_params))
    return JSONResponse({"folders": [vars(f) for f in d.manager.folders(key)]})


async def put_syncs(request: Request) -> Response:
    d = _desktop(request)
    data = await http.json_body(request)
    key = _key(d, data)
    folders = desktopsync.parse_folders(data.get("folders"))
    d.manager.set_folders(key, folders)
    return JSONResponse({"folders": [vars(f) for f in folders]})


async def events(request: Request) -> Response:
    """``snapshot`` (every sync's state), then ``state`` for each change."""
    manager = _desktop(request).manager
    queue = manager.subscribe()

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(event="snapshot", data=json.dumps(
                [s.to_json() for s in manager.states.values()]))
            while True:
                yield ServerSentEvent(event="state", data=json.dumps(await queue.get()))
        finally:
            manager.unsubscribe(queue)

    return EventSourceResponse(stream(), ping=PING_SECONDS,
                               headers={"Cache-Control": "no-store"})


def routes() -> list[BaseRoute]:
    return [
        Route("/api/desktop", describe),
        Route("/api/desktop/context", switch_context, methods=["POST"]),
        Route("/api/desktop/syncs", get_syncs),
        Route("/api/desktop/syncs", put_syncs, methods=["PUT"]),
        Route("/api/desktop/events", events),
    ]


def _header(scope: security.Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _cookie_name(scope: security.Scope) -> str:
    """Cookies are not kept per port: two runs must not overwrite each other's."""
    server = scope.get("server") or ("", 0)
    return f"{COOKIE}_{server[1]}"


def _cookie(scope: security.Scope) -> str:
    wanted = _cookie_name(scope)
    for part in _header(scope, b"cookie").split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted:
            return value
    return ""


class SecretGuard:
    """ASGI middleware: a loopback Host, the run's secret (once in the URL, then the
    cookie), and the context's token put on each request for the API."""

    def __init__(self, app: security.ASGIApp, *, secret: str, desktop: Desktop) -> None:
        self.app = app
        self.secret = secret
        self.desktop = desktop

    async def _refuse(self, scope: security.Scope, receive: security.Receive,
                      send: security.Send, message: str) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": message})
            return
        body = json.dumps({"error": {"status": "PERMISSION_DENIED", "message": message,
                                     "violations": []}}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: security.Scope, receive: security.Receive,
                       send: security.Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host").rpartition(":")[0] or _header(scope, b"host")
        if host not in _LOOPBACK_HOSTS:
            await self._refuse(scope, receive, send, "only a loopback Host is served")
            return
        query = dict(p.partition("=")[::2] for p in
                     bytes(scope.get("query_string", b"")).decode().split("&") if p)
        given = query.get("secret", "")
        if scope["type"] == "http" and scope["path"] == "/" and given:
            if not hmac.compare_digest(given, self.secret):
                await self._refuse(scope, receive, send, "wrong secret")
                return
            cookie = f"{_cookie_name(scope)}={self.secret}; HttpOnly; SameSite=Strict; Path=/"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if not hmac.compare_digest(_cookie(scope), self.secret):
            await self._refuse(scope, receive, send,
                               "open the address doractl ui printed (it has the secret)")
            return
        token = self.desktop.token
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"authorization"]
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {**scope, "headers": headers}
        if scope["type"] == "websocket":
            receive = self._with_token(receive, token)
        await self.app(scope, receive, send)

    @staticmethod
    def _with_token(receive: security.Receive, token: str) -> security.Receive:
        """The terminal's first frame carries the token: this one."""
        first = True

        async def wrapped() -> security.Message:
            nonlocal first
            message = await receive()
            if first and message["type"] == "websocket.receive" and message.get("text"):
                first = False
                with contextlib.suppress(ValueError, TypeError):
                    hello = json.loads(message["text"])
                    if isinstance(hello, dict):
                        hello["token"] = token
                        message = {**message, "text": json.dumps(hello)}
            return message

        return wrapped


def create_app(desktop: Desktop, *, secret: str, static_dir: Path | None,
               timeout: float = 30.0) -> security.ASGIApp:
    config = webapp.Config(server="", static_dir=static_dir, timeout=timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.desktop = desktop
        app.state.client = await desktop.client_for(desktop.context)
        desktop.manager.reconcile()
        try:
            yield
        finally:
            await desktop.close()

    app = Starlette(routes=[*routes(), *webapp.routes(config)], lifespan=lifespan,
                    exception_handlers={errors.DoraError: http.handle_dora_error,
                                        HTTPException: http.handle_http_error})
    return security.Guard(SecretGuard(app, secret=secret, desktop=desktop),
                          allowed_origins=frozenset())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dora-desktop", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--context", default=os.environ.get("DORA_CONTEXT", ""),
                   help="the context to start with (default: the current one)")
    p.add_argument("--static-dir", type=Path,
                   default=Path(os.environ.get("DORA_WEB_DIST", DEFAULT_DIST)),
                   help="the built web app (default: web/dist of this checkout)")
    p.add_argument("--desktop-config", type=Path, default=None,
                   help="where sync folders are kept (default ~/.dora/desktop.yaml)")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser().error("--port: expected 0 to 65535")
    try:
        store = desktopsync.Store.load(args.desktop_config or desktopsync.default_path())
        desktop = Desktop(profiles_path=profiles.default_path(), context=args.context,
                          store=store)
    except errors.DoraError as exc:
        print(f"dora-desktop: {exc.message}", file=sys.stderr)
        sys.exit(1)
    if not (args.static_dir / "index.html").is_file():
        print(f"dora-desktop: no built web app in {args.static_dir} (build it with "
              "hack/web-build.sh)", file=sys.stderr)
        sys.exit(1)
    logging.basicConfig(level=args.log_level.upper())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        print(f"dora-desktop: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}",
              file=sys.stderr)
        sys.exit(1)
    port = sock.getsockname()[1]
    secret = secrets.token_urlsafe(32)
    url = f"http://127.0.0.1:{port}/?secret={secret}"
    server = uvicorn.Server(uvicorn.Config(
        create_app(desktop, secret=secret, static_dir=args.static_dir), log_level=args.log_level,
        proxy_headers=False, ws="websockets-sansio"))
    print(f"Dora ({desktop.context}) is at {url}\nCtrl-C stops it and every sync.",
          flush=True)
    if not args.no_browser:
        webbrowser.open(url)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(sockets=[sock]))
    print("dora-desktop stopped, and every sync with it", flush=True)


if __name__ == "__main__":
    main()
