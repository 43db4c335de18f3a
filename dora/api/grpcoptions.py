"""The gRPC channel and server options every Dora process uses, in one place.

Long streams (watches, keep-alives, logs, exec) must not go silent (docs/architecture.md,
"Lessons"): clients ping every ``KEEPALIVE_SECONDS`` even without calls, and
servers accept pings that often (``min_ping_interval`` below the clients'
interval, or the server would answer the pings with GOAWAY). No
``max_connection_age`` anywhere: it would cut the streams that must last.

Requests are small but for a few methods: an object written (at most what etcd
takes in one request, 1.5 MiB by default), a file chunk (1 MiB), stdin. Each
method's request limit is in ``REQUEST_LIMITS`` (``request_limit``), checked on
every message before it is parsed (``grpcservice``); a server's transport limit
is the largest of them, so an 8 MB message never even reaches Python. A server
bounds its HTTP/2 streams per connection too (``MAX_STREAMS``).
"""

from __future__ import annotations

MiB = 1024 * 1024
KEEPALIVE_SECONDS = 15
SERVER_PING_EVERY_SECONDS = 20
SERVER_MIN_PING_INTERVAL_SECONDS = 10

Options = list[tuple[str, int]]

KiB = 1024
# Requests that carry no object: a name, a selector, a token.
DEFAULT_REQUEST_LIMIT = 64 * KiB
# Per method (the gRPC path's last two parts, ``Service/Method``, without the package).
REQUEST_LIMITS: dict[str, int] = {
    "Resources/Apply": 3 * MiB // 2,
    "Resources/UpdateStatus": 3 * MiB // 2,
    "Workspaces/Clone": 3 * MiB // 2,
    "VolumeFiles/Upload": MiB + 64 * KiB,
    "AgentVolumeFiles/Upload": MiB + 64 * KiB,
    "Streams/Exec": MiB + 64 * KiB,
    "AgentStreams/Exec": MiB + 64 * KiB,
}
# The transport's limit: the largest request any method takes.
MAX_REQUEST = max(REQUEST_LIMITS.values())
MAX_STREAMS = 1000


def request_limit(service: str, method: str) -> int:
    """The largest request message ``service`` (full name) takes for ``method``."""
    short = service.rsplit(".", 1)[-1]
    return REQUEST_LIMITS.get(f"{short}/{method}", DEFAULT_REQUEST_LIMIT)


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


def server(*, max_receive: int = MAX_REQUEST, max_send: int = 8 * MiB) -> Options:
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
        ("grpc.max_concurrent_streams", MAX_STREAMS),
    ]
