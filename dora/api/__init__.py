"""The Dora API: what every component shares.

- ``v1``: generated protobuf messages and gRPC stubs (``make gen``; never edited).
- ``kinds``: the table of kinds (names, aliases, scope) every layer looks up.
- ``objects``: small helpers over the ``Object`` envelope.
- ``codec``: YAML and dicts to and from ``Object``, with errors that name the field.
- ``labels``: label selectors.
- ``errors``: the error tree, shared by server and client.
- ``client``: the async gRPC client.
- ``profiles``: doractl's profile file (contexts) and how a connection is resolved,
  shared by ``doractl`` and the SDK.
- ``waiting``: waiting until an object reaches a state (``doractl wait``, the SDK).

This package imports no component (``apiserver``, ``ctl``, ...).
"""
