"""What keeps the gateway safe in a browser: the token, Origin checks and headers.

The token is a bearer token the page keeps in its session storage and sends in
the ``Authorization`` header; it never travels in a URL (so never in an access
log or a Referer). Because a cross-site page cannot make the browser add that
header, the token alone is no ambient credential; still, state-changing requests
and WebSockets coming from a page of another origin are refused (CSRF, and
WebSockets, which the same-origin policy does not cover). A request without an
``Origin`` is not from a browser page and is let through: its token still has
to pass the apiserver.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from dora.api import errors

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Styles: Vue and xterm.js set inline styles and xterm adds <style> elements.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What gRPC lets through in a metadata value, and what a Dora token is made of.
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        raise errors.Unauthenticated("sign in: no Authorization: Bearer token was sent")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise errors.Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def origin_allowed(scope: Scope, allowed: frozenset[str]) -> bool:
    """True when the request has no Origin, or one of this host or of ``allowed``."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    if origin in allowed:
        return True
    host = _header(scope, b"host")
    # Behind a TLS-terminating proxy the scheme seen here is not the page's: the
    # host is what tells one site from another.
    return host is not None and origin in (f"http://{host}", f"https://{host}")


class Guard:
    """ASGI middleware: security headers on every response; a 403 for a
    state-changing request from a foreign Origin, and a refused handshake for
    such a WebSocket."""

    def __init__(self, app: ASGIApp, *, allowed_origins: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" and not origin_allowed(scope, self.allowed):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008,
                        "reason": "cross-origin WebSocket refused"})
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS and not origin_allowed(scope, self.allowed):
            body = (b'{"error": {"status": "PERMISSION_DENIED", "message": '
                    b'"cross-origin request refused (Origin check)", "violations": []}}')
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {bytes(k).lower() for k, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in _HEADERS if k not in names]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
