"""``dora-web``: serve the web app and its API, as a client of the apiserver.

    dora-web --server 127.0.0.1:3000 --listen 127.0.0.1:8080

It needs no token of its own: each request carries the signed-in user's.
``--tls-cert/--tls-key`` serve HTTPS; ``--root-path /dora`` when a reverse proxy
serves it under a path; ``--allowed-origin`` for the page's origin when the proxy
changes the Host header.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from dora.web.app import Config, create_app

DEFAULT_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {value!r}")
    return host or "127.0.0.1", int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dora-web", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=os.environ.get("DORA_SERVER", "127.0.0.1:3000"),
                   help="the apiserver, HOST:PORT (default $DORA_SERVER or 127.0.0.1:3000)")
    p.add_argument("--ca-file", type=Path, help="CA bundle: reach the apiserver with TLS")
    p.add_argument("--server-tls", action="store_true",
                   help="reach the apiserver with TLS and the system's roots")
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080),
                   help="HOST:PORT to serve on (default 127.0.0.1:8080)")
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="... and this key (PEM)")
    p.add_argument("--root-path", default="",
                   help="the path a reverse proxy serves dora-web under, e.g. /dora")
    p.add_argument("--allowed-origin", action="append", default=[],
                   help="an origin (https://dora.example.org) the page may be served from "
                        "besides this host; repeatable")
    p.add_argument("--static-dir", type=Path,
                   default=Path(os.environ.get("DORA_WEB_DIST", DEFAULT_DIST)),
                   help="the built web app (default: web/dist of this checkout)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser().error("give both --tls-cert and --tls-key, or neither")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root_certificates = args.ca_file.read_bytes() if args.ca_file else None
    config = Config(server=args.server, root_certificates=root_certificates,
                    tls=args.server_tls, static_dir=args.static_dir,
                    allowed_origins=frozenset(o.rstrip("/") for o in args.allowed_origin))
    if not (args.static_dir / "index.html").is_file():
        print(f"dora-web: no built web app in {args.static_dir}; serving the API only "
              "(build it with hack/web-build.sh)", file=sys.stderr)
    logging.basicConfig(level=args.log_level.upper())
    host, port = args.listen
    uvicorn.run(create_app(config), host=host, port=port, root_path=args.root_path,
                ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
                ssl_keyfile=str(args.tls_key) if args.tls_key else None,
                log_level=args.log_level, proxy_headers=False, ws="websockets-sansio")


if __name__ == "__main__":
    main()
