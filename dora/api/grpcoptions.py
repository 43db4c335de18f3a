"""The gRPC channel and server options every Dora process uses, in one place.

Long streams (watches, keep-alives, logs, exec) must not go silent (DESIGN.md,
"Lessons"): clients ping every ``KEEPALIVE_SECONDS`` even without calls, and
servers accept pings that often (``min_ping_interval`` below the clients'
interval, or the server would answer the pings with GOAWAY). No
``max_connection_age`` anywhere: it would cut the streams that must last.
"""

from __future__ import annotations

MiB = 1024 * 1024
KEEPALIVE_SECONDS = 15
SERVER_PING_EVERY_SECONDS = 20
SERVER_MIN_PING_INTERVAL_SECONDS = 10

Options = list[tuple[str, int]]


def channel(*, max_receive: int = 8 * MiB, max_send: int = 8 * MiB) -> Options:
    """Options of a client channel (to an apiserver, or an apiserver's to an agent)."""
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.max_send_message_length", max_send),
    ]


def server(*, max_receive: int = 8 * MiB, max_send: int = 8 * MiB) -> Options:
    """Options of a server (the apiserver, an agent's stream server)."""
    return [
        ("grpc.keepalive_time_ms", SERVER_PING_EVERY_SECONDS * 1000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms",
         SERVER_MIN_PING_INTERVAL_SECONDS * 1000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.max_send_message_length", max_send),
    ]
