"""Admission: what the apiserver does to an object before it is stored.

``defaults`` fills in what the user left out (``replica.count`` is 1,
``restartPolicy`` is Never, ...); ``validation`` then checks every field and
reports all the bad ones at once, each by its path. Both are pure functions of
the object (and the admin's ``limits``): no storage, no clock, so they are tested
without a server. The registry runs them on every write (``admitter``): they are
handed to it, so admission sits above the registry, beside authentication.
"""

from collections.abc import Callable

from dora.api.v1 import object_pb2
from dora.apiserver.admission.defaults import apply_defaults
from dora.apiserver.admission.limits import DEFAULT as DEFAULT_LIMITS
from dora.apiserver.admission.limits import Limits
from dora.apiserver.admission.validation import MAX_OBJECT_BYTES, validate

__all__ = ["DEFAULT_LIMITS", "MAX_OBJECT_BYTES", "Limits", "admitter", "apply_defaults",
           "validate"]


def admitter(limits: Limits = DEFAULT_LIMITS) -> Callable[[object_pb2.Object], None]:
    """What the registry runs on every object it is about to write: the defaults, then
    the validation, under ``limits``."""

    def admit(obj: object_pb2.Object) -> None:
        apply_defaults(obj, limits)
        validate(obj, limits)

    return admit
