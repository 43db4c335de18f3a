"""Benchmarks: each figure measured against its baseline in the same run.

``python -m bench`` (``make bench``; ``make bench-quick`` for the small sizes)
prints a table and writes ``bench/results.json``. These machines are noisy, so
every figure is judged as a ratio to something measured at the same time, or
against an absolute target from docs/architecture.md where that is what the target says.
Never part of the test suite (beyond ``--smoke``, which only proves it runs).

Modules, one idea each: ``apiserver`` (Apply, Get/List, watch fan-out against raw
etcd), ``running`` (Apply to Running on the real Docker engine against ``docker
run``), ``scheduler`` (placements per second), ``agent_idle`` (an idle agent's CPU
and memory); ``cluster`` and ``daemons`` start the real processes they measure; ``watchers`` is
a client process of the watch fan-out figure.
"""
