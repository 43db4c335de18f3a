"""The scheduler: which node runs each Container.

- ``filters``: which nodes fit a request, and with which GPUs (pure).
- ``strategies``: First, Random, Distribute, Fill (pure).
- ``snapshot``: ``NodeInfo``s from the cache: capacity, usage, readiness.
- ``binder``: reserve, verify, commit: no GPU is given twice, even by two schedulers.
- ``reconciler``: the controller that puts them together.
"""
