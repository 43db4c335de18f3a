"""Admission: what the apiserver does to an object before it is stored.

``defaults`` fills in what the user left out (``replica.count`` is 1,
``restartPolicy`` is Never, ...); ``validation`` then checks every field and
reports all the bad ones at once, each by its path. Both are pure functions of
the object (and the admin's ``limits``): no storage, no clock, so they are tested
without a server.
"""

from dora.apiserver.admission.defaults import apply_defaults
from dora.apiserver.admission.limits import DEFAULT as DEFAULT_LIMITS
from dora.apiserver.admission.limits import Limits
from dora.apiserver.admission.validation import MAX_OBJECT_BYTES, validate

__all__ = ["DEFAULT_LIMITS", "MAX_OBJECT_BYTES", "Limits", "apply_defaults", "validate"]
