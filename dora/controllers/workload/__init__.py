"""The workload controller: a Workload's spec, made into Containers.

- ``plan``: one step toward the wanted containers, as a pure function.
- ``versions``: numbered ``Workloadversion``s of the spec (rollback restores one).
- ``status``: the Workload status (replica counts, conditions).
- ``reconciler``: the controller that puts them together.
"""
