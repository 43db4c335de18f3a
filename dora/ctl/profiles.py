"""``doractl``'s profiles: ``dora.api.profiles``, shared with the Python SDK.

The file format and the resolution order (flags, environment, context) are
documented there; this name stays so the commands read as before.
"""

from dora.api.profiles import (
    CONTEXT_KEYS,
    Connection,
    Context,
    Profiles,
    default_path,
    load,
    resolve,
    save,
    set_context,
)

__all__ = [
    "CONTEXT_KEYS", "Connection", "Context", "Profiles", "default_path", "load", "resolve",
    "save", "set_context",
]
