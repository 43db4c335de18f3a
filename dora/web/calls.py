"""What every route starts with: the apiserver client for the signed-in user's own
token (over the one shared connection) and the zone and workspace asked for."""

from __future__ import annotations

from starlette.requests import Request
from starlette.websockets import WebSocket

from dora.api.client import Client
from dora.web import security


def shared(request: Request | WebSocket) -> Client:
    client: Client = request.app.state.client
    return client


def user_client(request: Request) -> Client:
    token = security.bearer_token(request.headers.get("authorization"))
    return shared(request).with_token(token)


def scope_of(request: Request) -> tuple[str, str]:
    """``?zone=&workspace=``; empty: the user's defaults."""
    return request.query_params.get("zone", ""), request.query_params.get("workspace", "")
