"""One step of a Task, as a pure function of its spec, its status and its Containers.

The state of every job lives in two places, and ``plan`` merges them:

- the Task's status keeps, per job, a letter (``P`` pending, ``R`` running,
  ``W`` waiting to retry, ``C`` completed, ``F`` failed, ``K`` killed), the
  attempts started and the failures since the last ``task retry``;
- the Containers ``<task>.j<i>-<a>`` are the attempts themselves, with their
  node, exit code and times.

Transitions only go forward: ``P → R``, ``R → C | W | F | K``, ``W → R | K``;
``task retry`` takes ``F`` and ``K`` back to ``P``, nothing else does. ``C`` is
final: a job with an attempt that exited 0 is Completed, whatever else happened,
and is never started again.

A job is started by claiming its attempt in the status (``R``, ``attempts+1``)
*before* its Container is created: the status write is conditional on the
Task's resourceVersion, so two controllers (an old leader that has not noticed,
a new one with a stale cache) cannot both claim it, and the Container's name
carries the attempt, so creating it twice fails with ``AlreadyExists``. A job
claimed but whose Container is not there (the controller stopped between the
two writes, or the cache is behind its own create) is created again, under the
same name: once, whichever way it went.

An attempt on a lost node (phase ``Lost``: its node's lease expired, so its
agent stops it if it ever comes back) is deleted and the job waits to retry at
once, without it counting against ``retries``, as a workload replaces its
replicas. Other failed attempts count, and the next one starts after
``backoff * 2**(failures-1)`` seconds (at most ``max_backoff``).

While the user's credit is spent (``held``) no job starts, and running ones are
stopped (their attempts deleted) and wait as pending, without a failure, as a
workload's containers stop; they start again once there is credit.

Test jobs are the first ``testJobs`` indexes: the others start only once all
of them completed; a test job that failed for good makes the task Broken and
nothing else starts (the test jobs still running finish).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dora.api import tasks

ENDED = frozenset({"Exited", "Failed", "Lost"})
LOST = "Lost"
TERMINAL_JOBS = frozenset({tasks.JOB_COMPLETED, tasks.JOB_FAILED})


@dataclass(frozen=True)
class Attempt:
    """One Container of a job, as far as planning goes."""

    index: int
    attempt: int
    name: str
    phase: str = ""
    exit_code: int = 0
    terminating: bool = False
    # When it ended (seconds since the epoch), if it did.
    finished: float | None = None

    @property
    def live(self) -> bool:
        """Whether its Docker container may run (also while it is being deleted)."""
        return self.phase not in ENDED

    @property
    def succeeded(self) -> bool:
        return self.phase == "Exited" and self.exit_code == 0


@dataclass(frozen=True)
class Spec:
    total: int
    test_jobs: int
    retries: int
    parallelism: int | None = None
    killed: bool = False
    retry: int = 0
    # Why no job may run now (the user's credit is spent); "" when they may.
    held: str = ""


@dataclass
class Jobs:
    """The per-job part of the status (one entry per job) and the retry round acted on."""

    letters: list[str]
    attempts: list[int]
    failures: list[int]
    observed_retry: int = 0

    @classmethod
    def new(cls, total: int) -> Jobs:
        return cls([tasks.PENDING] * total, [0] * total, [0] * total)

    def copy(self) -> Jobs:
        return Jobs(list(self.letters), list(self.attempts), list(self.failures),
                    self.observed_retry)


@dataclass(frozen=True)
class Step:
    jobs: Jobs
    state: str
    message: str = ""
    # (index, attempt) Containers to create.
    start: tuple[tuple[int, int], ...] = ()
    # (container name, why) to delete.
    delete: tuple[tuple[str, str], ...] = ()
    requeue_after: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def backoff_of(failures: int, *, base: float, cap: float) -> float:
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 1)))


def plan(
    *,
    spec: Spec,
    jobs: Jobs,
    attempts: Mapping[int, Sequence[Attempt]],
    now: float,
    backoff: float = 10.0,
    max_backoff: float = 300.0,
    file_of: Sequence[str] = (),
) -> Step:
    jobs = jobs.copy()
    letters = jobs.letters
    total = len(letters)
    deletes: list[tuple[str, str]] = []
    start: list[tuple[int, int]] = []
    waits: list[float] = []
    if spec.retry > jobs.observed_retry:
        for index, letter in enumerate(letters):
            if letter in (tasks.JOB_FAILED, tasks.JOB_KILLED):
                letters[index] = tasks.PENDING
                jobs.failures[index] = 0
        jobs.observed_retry = spec.retry

    due: list[int] = []
    # Jobs with an attempt that may still run (one being stopped too): parallelism counts them.
    busy: set[int] = set()
    for index in range(total):
        mine = sorted(attempts.get(index, ()), key=lambda a: a.attempt)
        for attempt in mine:
            if attempt.phase == LOST and not attempt.terminating:
                deletes.append((attempt.name, "its node was lost"))
        if any(a.succeeded for a in mine):
            letters[index] = tasks.JOB_COMPLETED
            continue
        letter = letters[index]
        if letter == tasks.JOB_RUNNING:
            current = next((a for a in mine if a.attempt == jobs.attempts[index] - 1), None)
            if current is None:
                # Claimed, not created (or not seen yet): create it, by the same name.
                start.append((index, jobs.attempts[index] - 1))
            elif not current.live:
                if current.phase != LOST:
                    jobs.failures[index] += 1
                letters[index] = (tasks.JOB_FAILED if jobs.failures[index] > spec.retries
                                  else tasks.WAITING)
        if letters[index] == tasks.JOB_RUNNING and spec.held and not spec.killed:
            # Stopped for want of credit: not a failure; it runs again once it may.
            for a in mine:
                if a.live and not a.terminating:
                    deletes.append((a.name, spec.held))
            letters[index] = tasks.PENDING
            start = [s for s in start if s[0] != index]
        if any(a.live for a in mine):
            busy.add(index)
            continue  # never a second live attempt: the last one is still being stopped
        if letters[index] == tasks.WAITING:
            last = mine[-1] if mine else None
            wait = 0.0
            if last is not None and last.phase != LOST and last.finished is not None:
                pause = backoff_of(jobs.failures[index], base=backoff, cap=max_backoff)
                wait = last.finished + pause - now
            if wait > 0:
                waits.append(wait)
            else:
                due.append(index)
        elif letters[index] == tasks.PENDING:
            due.append(index)

    if spec.killed:
        for index, letter in enumerate(letters):
            if letter in (tasks.PENDING, tasks.JOB_RUNNING, tasks.WAITING):
                letters[index] = tasks.JOB_KILLED
        for index in range(total):
            for attempt in attempts.get(index, ()):
                if attempt.live and not attempt.terminating:
                    deletes.append((attempt.name, "the task was killed"))
        return _step(jobs, tasks.KILLED, "killed by the user", deletes=deletes)

    test_jobs = min(spec.test_jobs, total)
    failed_tests = [i for i in range(test_jobs) if letters[i] == tasks.JOB_FAILED]
    if failed_tests:
        index = failed_tests[0]
        name = file_of[index] if index < len(file_of) else str(index)
        message = f"test job {index} ({name}) failed; no other job is started"
        return _step(jobs, tasks.BROKEN, message, start=start, deletes=deletes)
    testing = any(letters[i] != tasks.JOB_COMPLETED for i in range(test_jobs))
    eligible = test_jobs if testing else total
    running = len(busy | {i for i, letter in enumerate(letters) if letter == tasks.JOB_RUNNING})
    room = total if spec.parallelism is None else spec.parallelism - running
    if spec.held:
        room = 0
    for index in due:
        if room <= 0 or index >= eligible:
            break
        letters[index] = tasks.JOB_RUNNING
        start.append((index, jobs.attempts[index]))
        jobs.attempts[index] += 1
        room -= 1
    if all(letter in (*TERMINAL_JOBS, tasks.JOB_KILLED) for letter in letters):
        killed = letters.count(tasks.JOB_KILLED)
        if killed:  # `killed` unset by hand: still killed until `task retry`
            return _step(jobs, tasks.KILLED, f"{killed} of {total} jobs were killed; "
                         "`doractl task retry` runs them", start=start, deletes=deletes)
        failed = letters.count(tasks.JOB_FAILED)
        if failed:
            return _step(jobs, tasks.FAILED, f"{failed} of {total} jobs failed",
                         start=start, deletes=deletes)
        return _step(jobs, tasks.COMPLETED, "", start=start, deletes=deletes)
    state = tasks.TESTING if testing else tasks.RUNNING
    return _step(jobs, state, spec.held, start=start, deletes=deletes,
                 requeue_after=max(0.05, min(waits)) if waits else 0.0)


def _step(jobs: Jobs, state: str, message: str, *,
          start: Sequence[tuple[int, int]] = (), deletes: Sequence[tuple[str, str]] = (),
          requeue_after: float = 0.0) -> Step:
    counts = {letter: jobs.letters.count(letter) for letter in tasks.JOB_STATES}
    return Step(jobs=jobs, state=state, message=message, start=tuple(start),
                delete=tuple(dict.fromkeys(deletes)), requeue_after=requeue_after,
                counts=counts)
