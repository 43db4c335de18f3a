"""doractl's commands, one module per group: ``config``, ``apply`` (and ``diff``),
``get``, ``describe``, ``delete``, ``workload`` (``scale``, ``stop``, ``start``,
``versions``, ``rollback``), ``token`` (and ``whoami``), ``workspaces``
(``clone workspace``).

Each module exposes ``register(app)`` (or a typer sub-app) and keeps the
command-line parsing in its command functions; what talks to the cluster is a
coroutine run by ``dora.ctl.session``.
"""
