"""The gateway's routes: the HTTP API under ``/api`` and the built page at ``/``.

Each handler takes the signed-in user's token from the request, calls the
apiserver with it over the shared connection (``Client.with_token``) and answers
in the JSON the codec writes (``doractl -o json``). The workload verbs are the
``dora.api.workloads`` recipes ``doractl`` runs too. Bad input is a 422 naming
the field; see ``dora.web.http`` for the other statuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from dora.api import codec, errors, kinds, tasks, workloads
from dora.api.client import Client
from dora.web import apply, calls, http, more, openapi, security, streams

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Config:
    server: str
    root_certificates: bytes | None = None
    tls: bool = False
    static_dir: Path | None = None
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    timeout: float = 30.0


_shared = calls.shared
user_client = calls.user_client
_scope = calls.scope_of


def _kind(request: Request) -> kinds.Kind:
    return kinds.lookup(request.path_params["kind"])


def _scoped(kind: kinds.Kind, zone: str, workspace: str) -> tuple[str, str]:
    return (zone if kind.zoned else "", workspace if kind.workspaced else "")


async def whoami(request: Request) -> Response:
    me = await user_client(request).whoami()
    return JSONResponse({"user": me.user, "tokenId": me.token_id, "zone": me.zone,
                         "workspace": me.workspace})


async def kind_table(request: Request) -> Response:
    return JSONResponse({"items": [
        {"name": k.name, "plural": k.plural, "zoned": k.zoned, "workspaced": k.workspaced}
        for k in kinds.KINDS
    ]})


async def list_objects(request: Request) -> Response:
    kind = _kind(request)
    zone, workspace = _scoped(kind, *_scope(request))
    items, version = await user_client(request).list(
        kind.name, zone=zone, workspace=workspace,
        label_selector=request.query_params.get("labelSelector", ""),
    )
    return JSONResponse({"items": [codec.to_dict(o) for o in items],
                         "resourceVersion": version})


async def get_object(request: Request) -> Response:
    kind = _kind(request)
    zone, workspace = _scoped(kind, *_scope(request))
    obj = await user_client(request).get(kind.name, request.path_params["name"], zone=zone,
                                         workspace=workspace)
    return JSONResponse(codec.to_dict(obj))


async def delete_object(request: Request) -> Response:
    kind = _kind(request)
    zone, workspace = _scoped(kind, *_scope(request))
    raw = request.query_params.get("resourceVersion", "0")
    if not raw.isdigit():
        raise errors.Invalid("expected an integer", field="resourceVersion")
    obj = await user_client(request).delete(kind.name, request.path_params["name"],
                                            zone=zone, workspace=workspace,
                                            resource_version=int(raw))
    return JSONResponse(codec.to_dict(obj))


async def watch(request: Request) -> Response:
    kind = _kind(request)
    zone, workspace = _scoped(kind, *_scope(request))
    return await streams.watch(request, user_client(request), kind, zone=zone,
                               workspace=workspace,
                               label_selector=request.query_params.get("labelSelector", ""))


async def apply_yaml(request: Request) -> Response:
    data = await http.json_body(request)
    text = http.str_field(data, "yaml")
    dry_run = data.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise errors.Invalid("expected true or false", field="dryRun")
    zone, workspace = _scope(request)
    results = await apply.apply_text(user_client(request), text, zone=zone,
                                     workspace=workspace, dry_run=dry_run)
    return JSONResponse({"results": results})


def _workload_verb(change: Callable[[dict[str, Any]], workloads.Mutation]) -> Handler:
    async def handler(request: Request) -> Response:
        data = await http.json_body(request)
        zone, workspace = _scope(request)
        obj, result = await workloads.update_spec(
            user_client(request), request.path_params["name"], change(data), zone=zone,
            workspace=workspace)
        return JSONResponse({"object": codec.to_dict(obj),
                             "result": apply.RESULT_WORDS.get(result, "applied")})

    return handler


def _scale(data: dict[str, Any]) -> workloads.Mutation:
    """``{"replicas": n}`` sets the count; ``{"by": +1}`` moves it, on the count read."""
    if "by" in data:
        by = http.int_field(data, "by")
        assert by is not None

        def mutate(spec: Any) -> None:
            workloads.scale_to(max(0, spec.replica.count + by))(spec)

        return mutate
    replicas = http.int_field(data, "replicas", low=0)
    assert replicas is not None
    return workloads.scale_to(replicas)


async def versions(request: Request) -> Response:
    client = user_client(request)
    zone, workspace = _scope(request)
    workload = await client.get("Workload", request.path_params["name"], zone=zone,
                                workspace=workspace)
    found = await workloads.versions_of(client, workload)
    return JSONResponse({"current": workload.workload.status.current_version,
                         "items": [codec.to_dict(v) for v in found]})


async def rollback(request: Request) -> Response:
    data = await http.json_body(request)
    number = http.int_field(data, "version", low=1, required=False)
    zone, workspace = _scope(request)
    version, result = await workloads.rollback(user_client(request),
                                               request.path_params["name"], number,
                                               zone=zone, workspace=workspace)
    return JSONResponse({"version": version,
                         "result": apply.RESULT_WORDS.get(result, "applied")})


async def scale_down_container(request: Request) -> Response:
    zone, workspace = _scope(request)
    obj = await workloads.scale_down_container(user_client(request),
                                               request.path_params["name"], zone=zone,
                                               workspace=workspace)
    return JSONResponse(codec.to_dict(obj))


async def container_logs(request: Request) -> Response:
    zone, workspace = _scope(request)
    follow = request.query_params.get("follow", "") in ("1", "true")
    return await streams.logs(user_client(request), request.path_params["name"], zone=zone,
                              workspace=workspace, follow=follow,
                              tail_lines=streams.tail_lines(request))


async def clone_workspace(request: Request) -> Response:
    data = await http.json_body(request)
    copied = await user_client(request).clone_workspace(
        http.str_field(data, "source"), http.str_field(data, "destination"),
        zone=http.str_field(data, "zone", required=False))
    return JSONResponse({"copied": copied})


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi.document(request.scope.get("root_path", "")))


async def exec_socket(websocket: WebSocket) -> None:
    await streams.exec_socket(websocket, _shared(websocket))


async def api_not_found(request: Request) -> Response:
    return http.error_response(errors.NotFound(f"no API route {request.url.path}"))


_NO_PAGE = """<!doctype html><title>Dora</title>
<p>The web app is not built: run <code>hack/web-build.sh</code> (or <code>make up</code>),
then reload. The API is at <a href="api/openapi.json">api/openapi.json</a>.</p>"""


def routes(config: Config) -> list[BaseRoute]:
    api: list[BaseRoute] = [
        Route("/api/openapi.json", openapi_document),
        Route("/api/whoami", whoami),
        Route("/api/kinds", kind_table),
        Route("/api/apply", apply_yaml, methods=["POST"]),
        Route("/api/watch/{kind}", watch),
        Route("/api/objects/{kind}", list_objects),
        Route("/api/objects/{kind}/{name}", get_object),
        Route("/api/objects/{kind}/{name}", delete_object, methods=["DELETE"]),
        Route("/api/workloads/{name}/scale", _workload_verb(_scale), methods=["POST"]),
        Route("/api/workloads/{name}/stop",
              _workload_verb(lambda _: workloads.set_stopped(True)), methods=["POST"]),
        Route("/api/workloads/{name}/start",
              _workload_verb(lambda _: workloads.set_stopped(False)), methods=["POST"]),
        Route("/api/workloads/{name}/versions", versions),
        Route("/api/workloads/{name}/rollback", rollback, methods=["POST"]),
        Route("/api/containers/{name}/scale-down", scale_down_container, methods=["POST"]),
        Route("/api/containers/{name}/logs", container_logs),
        Route("/api/workspaces/clone", clone_workspace, methods=["POST"]),
        Route("/api/workloads/{name}/pause", more.pause_route("Workload", True),
              methods=["POST"]),
        Route("/api/workloads/{name}/resume", more.pause_route("Workload", False),
              methods=["POST"]),
        Route("/api/containers/{name}/pause", more.pause_route("Container", True),
              methods=["POST"]),
        Route("/api/containers/{name}/resume", more.pause_route("Container", False),
              methods=["POST"]),
        Route("/api/workloads/{name}/logs", more.workload_logs),
        Route("/api/devices/{kind}", more.devices),
        Route("/api/volumes/{name}/ls", more.volume_ls),
        Route("/api/volumes/{name}/files/{path:path}", more.volume_download),
        Route("/api/volumes/{name}/files/{path:path}", more.volume_upload, methods=["PUT"]),
        Route("/api/tasks/{name}/jobs", more.task_jobs),
        Route("/api/tasks/{name}/kill", more.task_route(tasks.kill_spec), methods=["POST"]),
        Route("/api/tasks/{name}/retry", more.task_route(tasks.retry_spec), methods=["POST"]),
        WebSocketRoute("/api/containers/{name}/exec", exec_socket),
        Route("/api/{rest:path}", api_not_found,
              methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    page: list[BaseRoute]
    if config.static_dir is not None and (config.static_dir / "index.html").is_file():
        page = [Mount("/", StaticFiles(directory=config.static_dir, html=True))]
    else:
        page = [Route("/", lambda _: HTMLResponse(_NO_PAGE, status_code=503))]
    return [*api, *page]


def create_app(config: Config) -> security.ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Client(config.server, root_certificates=config.root_certificates,
                          tls=config.tls, timeout=config.timeout) as client:
            app.state.client = client
            yield

    app = Starlette(routes=routes(config), lifespan=lifespan,
                    exception_handlers={errors.DoraError: http.handle_dora_error,
                                        HTTPException: http.handle_http_error})
    return security.Guard(app, allowed_origins=config.allowed_origins)
