"""The queue: what decides whether, and in which order, pending containers are placed.

- ``quota``: the arithmetic of caps (pure): does one more container fit every
  Quota that covers it.
- ``gate``: the quota gate the scheduler asks, under its placement lock, before
  it reserves a node for a container; over a cap, the container waits with
  reason ``QuotaExceeded``.

It reads only the controllers' cache; the scheduler owns the writes.
"""
