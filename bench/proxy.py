"""``python -m bench.proxy``: the least an apiserver written like Dora's can do per
Apply, as a ceiling for the Apply figure.

A ``grpc.aio`` server answering ``dora.api.v1.Resources/Apply`` (so the same
client calls it) that forwards each request's object as one etcd create
transaction through the same ``Etcd`` storage class, and answers with the object:
no authentication, no admission, no watch cache, no registry. Whatever this
process reaches on a machine, an apiserver in the same language and runtime,
which does all of those, stays below; the Apply figure reports its ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import grpc

from dora.api import grpcoptions
from dora.api.v1 import resources_pb2
from dora.apiserver.services.resources import SERVICE
from dora.apiserver.storage import Etcd

PREFIX = b"/bench/proxy/"


async def serve(etcd_endpoint: str, port_file: str) -> None:
    etcd = Etcd([etcd_endpoint])
    await etcd.connect()

    async def apply(request: resources_pb2.ApplyRequest,
                    context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        key = PREFIX + request.object.metadata.name.encode()
        written = await etcd.put_if(key, request.object.SerializeToString(), mod_revision=0)
        if not written.succeeded:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{key!r} exists")
        response = resources_pb2.ApplyResponse(object=request.object)
        response.object.metadata.resource_version = written.revision
        return response.SerializeToString()

    server = grpc.aio.server(options=grpcoptions.server())
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Apply": grpc.unary_unary_rpc_method_handler(
            apply, request_deserializer=resources_pb2.ApplyRequest.FromString),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _announce(port_file, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)
    await etcd.close()


def _announce(port_file: str, port: int) -> None:
    """Write the port where a reader never sees half of it."""
    partial = Path(port_file).with_suffix(".partial")
    partial.write_text(f"{port}\n")
    partial.replace(port_file)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy")
    parser.add_argument("--etcd-endpoint", required=True)
    parser.add_argument("--port-file", required=True, help="where the listening port is written")
    args = parser.parse_args()
    asyncio.run(serve(args.etcd_endpoint, args.port_file))


if __name__ == "__main__":
    main()
