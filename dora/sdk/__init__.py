"""The Python SDK: ``dora.Client`` for scripts and notebooks, ``dora.AsyncClient``
for async code, with the same methods.

::

    import dora

    with dora.Client.from_profile() as client:          # doractl's current context
        client.apply(dora.Workload("hello", image="dora/busybox", cmd="sleep 600"))
        client.wait("workload", "hello", "condition=Available", timeout=120)
        for c in client.list("containers"):
            print(c.name, c.phase)

A Task of N jobs (seed 003)::

        client.submit_task(dora.Task("sweep", image="dora/busybox",
                                     exec="sh /t/job.sh -d %DATA -c %IN -o %OUT",
                                     data="files:data.pic", configs="files:configs/",
                                     output="files:tasks/sweep/", parallelism=4))
        done = client.wait_task("sweep", timeout=3600)   # Completed, Failed, Broken, Killed
        failed = [j for j in client.jobs(done) if j.state == "Failed"]

A folder mirrored into a volume, as ``doractl sync``::

        done = client.sync("./code", "home", "code")        # follow=True: until cancelled
        print(done.sent, done.deleted)

Modules: ``resources`` (what calls return: ``Resource``, ``Applied``, ``Event``,
``ExecResult``, ``Job``, ``Synced``; the ``Workload`` and ``Task`` builders), ``aio``
(``AsyncClient``, over ``dora.api.client``) and ``sync`` (``Client``, the async client on a private
event loop in a thread). The SDK is a client like doractl: it imports
``dora.api`` only (never ``dora.ctl``, so no typer/rich, nor the server side).
Errors are ``dora.api.errors``; a wait that runs out raises
``dora.api.waiting.WaitTimeout``, a ``TimeoutError``.
"""

from dora.api import errors
from dora.api.waiting import WaitTimeout
from dora.sdk.aio import AsyncClient
from dora.sdk.resources import (
    Applied,
    Event,
    ExecResult,
    Job,
    Resource,
    Synced,
    Task,
    Workload,
)
from dora.sdk.sync import Client

__all__ = [
    "Applied", "AsyncClient", "Client", "Event", "ExecResult", "Job", "Resource", "Synced",
    "Task", "WaitTimeout", "Workload", "errors",
]
