"""The task controller: a Task's jobs (seed 003), run as Containers exactly once each.

- ``plan``: one step of a task (which jobs start, which end how), a pure function.
- ``reconciler``: the controller: fixes the job list, writes the status that
  claims each attempt, then creates and deletes Containers.
"""
