"""The OpenAPI 3.1 description of the gateway's HTTP API (``/api/openapi.json``).

Written by hand from the route table in ``dora.web.app``: resources are the
objects ``doractl -o json`` prints, so their schema is open (``Object``), and the
error body is the one ``dora.web.http`` writes. A test checks every route here
is served and every served route is here.
"""

from __future__ import annotations

from typing import Any

_SCOPE = [
    {"name": "zone", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "The zone; default: the user's."},
    {"name": "workspace", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "The workspace; default: the user's."},
]
_KIND = {"name": "kind", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "A kind's name, plural or alias: workloads, containers, nodes, ..."}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    str(status): {"description": text, "content": {"application/json": {"schema": _ERROR_REF}}}
    for status, text in ((401, "no token, or one the apiserver refuses"),
                         (403, "the token may not do this, or a cross-origin request"),
                         (404, "no such object"), (409, "conflict"),
                         (422, "bad input; the violations name the fields"),
                         (503, "the apiserver is unavailable"))
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"200": {"description": description,
                    "content": {"application/json": {"schema": schema}}}, **_ERRORS}


def _sse(description: str) -> dict[str, Any]:
    return {"200": {"description": description,
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            **_ERRORS}


_OBJECT = {"$ref": "#/components/schemas/Object"}
_RESULT = {"type": "object", "properties": {"object": _OBJECT, "result": {"type": "string"}}}


_PAUSED = {"type": "object", "properties": {
    "object": _OBJECT, "containers": {"type": "array", "items": {"type": "string"}}}}
_PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "A file inside the volume; '..' is refused"}
_PATH_QUERY = {"name": "path", "in": "query", "required": False,
               "schema": {"type": "string"}, "description": "A folder; default: the root"}
_FILE = {"type": "object", "properties": {
    "path": {"type": "string"}, "name": {"type": "string"}, "isDir": {"type": "boolean"},
    "size": {"type": "integer"}, "mtimeNs": {"type": "integer"}, "mode": {"type": "integer"},
    "sha256": {"type": "string"}}}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


def _post(summary: str, response: dict[str, Any], *, params: list[Any],
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": response}
    if body is not None:
        op["requestBody"] = body
    return {"post": op}


PATHS: dict[str, dict[str, Any]] = {
    "/api/openapi.json": {"get": {"summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OK"}}}},
    "/api/whoami": {"get": {"summary": "Who the token belongs to, and their defaults",
                            "responses": _json({"type": "object", "properties": {
                                "user": {"type": "string"}, "tokenId": {"type": "string"},
                                "zone": {"type": "string"},
                                "workspace": {"type": "string"}}})}},
    "/api/kinds": {"get": {"summary": "The kinds of objects", "security": [],
                           "responses": _json({"type": "object"})}},
    "/api/apply": _post(
        "Apply YAML text: every document, or none", _json({"type": "object", "properties": {
            "results": {"type": "array", "items": _RESULT}}}),
        params=_SCOPE, body=_body({"yaml": {"type": "string"}, "dryRun": {"type": "boolean"}},
                                  ["yaml"])),
    "/api/watch/{kind}": {"get": {
        "summary": "Changes as Server-Sent Events; id = resourceVersion; resumes from "
                   "Last-Event-ID; event `reset` when too old",
        "parameters": [_KIND, *_SCOPE,
                       {"name": "resourceVersion", "in": "query", "schema": {"type": "integer"}},
                       {"name": "labelSelector", "in": "query", "schema": {"type": "string"}},
                       {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
        "responses": _sse("events added, modified, deleted, bookmark, reset, error")}},
    "/api/objects/{kind}": {"get": {
        "summary": "List objects of a kind",
        "parameters": [_KIND, *_SCOPE,
                       {"name": "labelSelector", "in": "query", "schema": {"type": "string"}}],
        "responses": _json({"type": "object", "properties": {
            "items": {"type": "array", "items": _OBJECT},
            "resourceVersion": {"type": "integer"}}})}},
    "/api/objects/{kind}/{name}": {
        "get": {"summary": "Get an object", "parameters": [_KIND, _NAME, *_SCOPE],
                "responses": _json(_OBJECT)},
        "delete": {"summary": "Delete an object",
                   "parameters": [_KIND, _NAME, *_SCOPE,
                                  {"name": "resourceVersion", "in": "query",
                                   "schema": {"type": "integer"}}],
                   "responses": _json(_OBJECT)}},
    "/api/workloads/{name}/scale": _post(
        "Set (replicas) or move (by) a workload's replica count", _json(_RESULT),
        params=[_NAME, *_SCOPE],
        body=_body({"replicas": {"type": "integer", "minimum": 0}, "by": {"type": "integer"}},
                   [])),
    "/api/workloads/{name}/stop": _post("Stop a workload: no containers, definition kept",
                                        _json(_RESULT), params=[_NAME, *_SCOPE]),
    "/api/workloads/{name}/start": _post("Start a stopped workload", _json(_RESULT),
                                         params=[_NAME, *_SCOPE]),
    "/api/workloads/{name}/versions": {"get": {
        "summary": "A workload's versions, oldest first", "parameters": [_NAME, *_SCOPE],
        "responses": _json({"type": "object", "properties": {
            "current": {"type": "integer"}, "items": {"type": "array", "items": _OBJECT}}})}},
    "/api/workloads/{name}/rollback": _post(
        "Restore a version (default: the one before the current)",
        _json({"type": "object"}), params=[_NAME, *_SCOPE],
        body=_body({"version": {"type": "integer", "minimum": 1}}, [])),
    "/api/containers/{name}/scale-down": _post(
        "Delete a container and lower its workload's replica count", _json(_OBJECT),
        params=[_NAME, *_SCOPE]),
    "/api/containers/{name}/logs": {"get": {
        "summary": "A container's output as Server-Sent Events (event log: {text})",
        "parameters": [_NAME, *_SCOPE,
                       {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                       {"name": "tailLines", "in": "query", "schema": {"type": "integer"}}],
        "responses": _sse("events log, end, error")}},
    "/api/containers/{name}/exec": {"get": {
        "summary": "WebSocket: a shell in a container. First text frame {token, command, "
                   "rows, cols}; binary frames are the terminal; text {resize: {rows, "
                   "cols}}; the gateway ends with text {exit: code}",
        "parameters": [_NAME, *_SCOPE],
        "responses": {"101": {"description": "Switching Protocols"}}}},
    "/api/workspaces/clone": _post(
        "Copy a workspace's definitions into another", _json({"type": "object"}), params=[],
        body=_body({"source": {"type": "string"}, "destination": {"type": "string"},
                    "zone": {"type": "string"}}, ["source", "destination"])),
    "/api/workloads/{name}/pause": _post(
        "Pause a workload's running containers (verb Pause; phase Paused)",
        _json(_PAUSED), params=[_NAME, *_SCOPE]),
    "/api/workloads/{name}/resume": _post("Resume a paused workload (verb Resume)",
                                          _json(_PAUSED), params=[_NAME, *_SCOPE]),
    "/api/containers/{name}/pause": _post("Pause one container (verb Pause)",
                                          _json(_PAUSED), params=[_NAME, *_SCOPE]),
    "/api/containers/{name}/resume": _post("Resume one container (verb Resume)",
                                           _json(_PAUSED), params=[_NAME, *_SCOPE]),
    "/api/workloads/{name}/logs": {"get": {
        "summary": "The output of all a workload's containers, each line prefixed with "
                   "[container], as Server-Sent Events (event log: {text, container}); "
                   "followed, containers that start later join",
        "parameters": [_NAME, *_SCOPE,
                       {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                       {"name": "tailLines", "in": "query", "schema": {"type": "integer"}}],
        "responses": _sse("events log, end")}},
    "/api/devices/{kind}": {"get": {
        "summary": "The GPUs or CPUs of the zone's nodes and their product kinds "
                   "(Devices service)",
        "parameters": [{"name": "kind", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": ["GPU", "CPU"]}}, *_SCOPE],
        "responses": _json({"type": "object", "properties": {
            "zone": {"type": "string"}, "products": {"type": "array",
                                                     "items": {"type": "string"}},
            "items": {"type": "array", "items": {"type": "object"}}}})}},
    "/api/volumes/{name}/ls": {"get": {
        "summary": "The files of a folder of a volume (verb Ls)",
        "parameters": [_NAME, *_SCOPE, _PATH_QUERY],
        "responses": _json({"type": "object", "properties": {
            "path": {"type": "string"}, "exists": {"type": "boolean"},
            "files": {"type": "array", "items": _FILE},
            "partialSize": {"type": "integer", "description":
                            "bytes of an interrupted upload to path (a file), to resume "
                            "from with X-Upload-Offset"}}})}},
    "/api/volumes/{name}/files/{path}": {
        "get": {"summary": "Download a file of a volume, streamed (verb Download)",
                "parameters": [_NAME, _PATH, *_SCOPE],
                "responses": {"200": {"description": "the file", "content": {
                    "application/octet-stream": {"schema": {"type": "string",
                                                            "format": "binary"}}}},
                              **_ERRORS}},
        "put": {"summary": "Upload a file into a volume: the raw body, with its "
                           "Content-Length, streamed (verb Upload); resumable from "
                           "ls's partialSize with X-Upload-Offset (and the sha256)",
                "parameters": [_NAME, _PATH, *_SCOPE,
                               {"name": "X-Content-SHA256", "in": "header",
                                "schema": {"type": "string"}},
                               {"name": "X-Upload-Offset", "in": "header",
                                "schema": {"type": "integer", "minimum": 0}}],
                "requestBody": {"required": True, "content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "responses": _json({"type": "object", "properties": {"file": _FILE}})}},
    "/api/tasks/{name}/jobs": {"get": {
        "summary": "A task and its job table (state, attempts, failures, the latest "
                   "attempt's container)", "parameters": [_NAME, *_SCOPE],
        "responses": _json({"type": "object", "properties": {
            "object": _OBJECT, "jobs": {"type": "array", "items": {"type": "object"}}}})}},
    "/api/tasks/{name}/kill": _post("Kill a task: its running jobs stop (spec.killed)",
                                    _json(_RESULT), params=[_NAME, *_SCOPE]),
    "/api/tasks/{name}/retry": _post("Run a task's Failed and Killed jobs again "
                                     "(spec.retry)", _json(_RESULT), params=[_NAME, *_SCOPE]),
}


def document(root_path: str = "") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "dora-web", "version": "1",
                 "description": "The Dora web app's gateway to the apiserver: every call "
                                "runs with the caller's own token."},
        "servers": [{"url": root_path or "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Object": {"type": "object", "description": "A Dora object as doractl -o "
                           "json prints it: apiVersion, kind, metadata, spec, status",
                           "properties": {"apiVersion": {"type": "string"},
                                          "kind": {"type": "string"},
                                          "metadata": {"type": "object"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["status", "message"],
                              "properties": {
                                  "status": {"type": "string"},
                                  "message": {"type": "string"},
                                  "violations": {"type": "array", "items": {
                                      "type": "object", "properties": {
                                          "field": {"type": "string"},
                                          "description": {"type": "string"},
                                          "document": {"type": "integer"},
                                          "line": {"type": "integer"},
                                          "column": {"type": "integer"}}}}}}}},
            },
        },
    }
