"""The credit controller (seed 001 "Credits", seed 004 "Credit checker").

Administrators price resources per zone (``Resourcecredit``) and give users a
weekly budget per zone (``User.spec.credits``); this controller meters what the
users' containers use into ``Usercredit`` objects and stops a user's workloads
when the budget is spent.

- ``accrual``: weeks, windows, prices, charges (pure arithmetic);
- ``ledger``: a user's week recomputed from scratch (restart safety);
- ``reconciler``: the controller (finalizer, status, enforcement).

It may import ``dora.api`` and ``dora.runtime`` like every controller.
"""
