"""The queue: what decides whether, and in which order, pending containers are placed.

- ``quota``: the arithmetic of caps (pure): does one more container fit every
  Quota that covers it.
- ``gate``: the quota gate the scheduler asks, under its placement lock, before
  it reserves a node for a container; over a cap, the container waits with
  reason ``QuotaExceeded``.
- ``order`` (pure but for the clock): priority, then fair share (decaying DRF
  use per account); ``turn``: the order gate the scheduler asks once a node is
  found (a better-ranked waiting container of the same shape goes first).
- ``preempt``: in a zone with ``spec.preemption``, the running containers of lower
  priority and another account a waiting one may stop.

It reads only the controllers' cache; the scheduler owns the writes.
"""
