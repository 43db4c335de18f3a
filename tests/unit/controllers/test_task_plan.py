"""The task controller's step: job planning, the state machine, exactly-once claims."""

from __future__ import annotations

from collections.abc import Sequence

from dora.api import tasks
from dora.controllers.task.plan import Attempt, Jobs, Spec, Step, backoff_of, plan

NOW = 1000.0


def attempt(index: int, number: int, phase: str = "Running", exit_code: int = 0, *,
            finished: float | None = None, terminating: bool = False) -> Attempt:
    if finished is None and phase in ("Exited", "Failed"):
        finished = NOW - 100
    return Attempt(index=index, attempt=number, name=f"t.j{index}-{number}", phase=phase,
                   exit_code=exit_code, terminating=terminating, finished=finished)


def step(spec: Spec, jobs: Jobs, found: Sequence[Attempt] = (), **kwargs: float) -> Step:
    by_index: dict[int, list[Attempt]] = {}
    for a in found:
        by_index.setdefault(a.index, []).append(a)
    return plan(spec=spec, jobs=jobs, attempts=by_index, now=NOW, **kwargs)


def test_test_jobs_run_first_within_parallelism() -> None:
    result = step(Spec(total=8, test_jobs=2, retries=0, parallelism=4), Jobs.new(8))
    assert result.start == ((0, 0), (1, 0))
    assert result.state == tasks.TESTING
    assert "".join(result.jobs.letters) == "RRPPPPPP"
    assert result.jobs.attempts[:3] == [1, 1, 0]


def test_the_rest_start_only_once_every_test_job_completed() -> None:
    first = step(Spec(total=8, test_jobs=2, retries=0, parallelism=4), Jobs.new(8))
    half = step(Spec(total=8, test_jobs=2, retries=0, parallelism=4), first.jobs,
                [attempt(0, 0, "Exited", 0), attempt(1, 0)])
    assert half.start == ()
    assert half.state == tasks.TESTING
    done = step(Spec(total=8, test_jobs=2, retries=0, parallelism=4), half.jobs,
                [attempt(0, 0, "Exited", 0), attempt(1, 0, "Exited", 0)])
    assert done.state == tasks.RUNNING
    assert done.start == ((2, 0), (3, 0), (4, 0), (5, 0))


def test_parallelism_counts_running_jobs_and_unbounded_starts_all() -> None:
    jobs = Jobs.new(5)
    jobs.letters[:2] = [tasks.JOB_RUNNING] * 2
    jobs.attempts[:2] = [1, 1]
    live = [attempt(0, 0), attempt(1, 0)]
    assert step(Spec(total=5, test_jobs=0, retries=0, parallelism=3), jobs, live).start == (
        (2, 0),)
    assert len(step(Spec(total=5, test_jobs=0, retries=0), Jobs.new(5)).start) == 5


def test_a_failed_test_job_breaks_the_task_and_nothing_else_starts() -> None:
    first = step(Spec(total=6, test_jobs=2, retries=0), Jobs.new(6), file_of=[])
    broken = step(Spec(total=6, test_jobs=2, retries=0), first.jobs,
                  [attempt(0, 0, "Exited", 3), attempt(1, 0, "Exited", 0)])
    assert broken.state == tasks.BROKEN
    assert broken.start == ()
    assert "test job 0" in broken.message
    assert "".join(broken.jobs.letters) == "FCPPPP"


def test_a_failure_retries_after_backoff_then_fails_for_good() -> None:
    spec = Spec(total=1, test_jobs=0, retries=2)
    jobs = step(spec, Jobs.new(1)).jobs
    waiting = step(spec, jobs, [attempt(0, 0, "Exited", 1, finished=NOW - 1)], backoff=10)
    assert waiting.jobs.letters == [tasks.WAITING]
    assert waiting.start == ()
    assert 8.9 < waiting.requeue_after < 9.1
    again = step(spec, waiting.jobs, [attempt(0, 0, "Exited", 1, finished=NOW - 11)],
                 backoff=10)
    assert again.start == ((0, 1),)
    found = [attempt(0, 0, "Exited", 1), attempt(0, 1, "Exited", 1)]
    third = step(spec, step(spec, again.jobs, found).jobs, found)
    assert third.start == ((0, 2),)
    found.append(attempt(0, 2, "Failed", 125))
    final = step(spec, third.jobs, found)
    assert final.jobs.letters == [tasks.JOB_FAILED]
    assert final.jobs.failures == [3]
    assert final.state == tasks.FAILED
    assert backoff_of(1, base=10, cap=300) == 10 and backoff_of(3, base=10, cap=300) == 40
    assert backoff_of(9, base=10, cap=300) == 300


def test_completed_is_final_and_counted_once() -> None:
    spec = Spec(total=2, test_jobs=0, retries=3)
    jobs = step(spec, Jobs.new(2)).jobs
    found = [attempt(0, 0, "Exited", 0), attempt(1, 0, "Exited", 0)]
    done = step(spec, jobs, found)
    assert done.state == tasks.COMPLETED and done.counts[tasks.JOB_COMPLETED] == 2
    # The containers gone (deleted by hand): the status still says Completed, no rerun.
    later = step(spec, done.jobs, [])
    assert later.start == () and later.state == tasks.COMPLETED


def test_a_claimed_attempt_without_its_container_is_created_by_the_same_name() -> None:
    spec = Spec(total=3, test_jobs=0, retries=0, parallelism=1)
    claimed = step(spec, Jobs.new(3))
    assert claimed.start == ((0, 0),)
    # A new leader: the status says job 0 runs attempt 0, no container seen.
    again = step(spec, claimed.jobs, [])
    assert again.start == ((0, 0),)
    assert again.jobs.attempts == [1, 0, 0]


def test_a_lost_attempt_is_deleted_and_rerun_without_counting_a_failure() -> None:
    spec = Spec(total=1, test_jobs=0, retries=0)
    jobs = step(spec, Jobs.new(1)).jobs
    lost = step(spec, jobs, [attempt(0, 0, "Lost")])
    assert lost.delete == (("t.j0-0", "its node was lost"),)
    assert lost.start == ((0, 1),)
    assert lost.jobs.failures == [0]


def test_no_second_live_container_while_the_last_one_is_stopping() -> None:
    spec = Spec(total=1, test_jobs=0, retries=2)
    jobs = Jobs([tasks.WAITING], [1], [1])
    assert step(spec, jobs, [attempt(0, 0, "Running", terminating=True)]).start == ()


def test_kill_stops_live_attempts_and_keeps_records_then_retry_reruns_only_those() -> None:
    spec = Spec(total=3, test_jobs=0, retries=0)
    jobs = step(spec, Jobs.new(3)).jobs
    found = [attempt(0, 0, "Exited", 0), attempt(1, 0), attempt(2, 0, "Exited", 4)]
    failed = step(spec, jobs, found)
    assert failed.jobs.letters == ["C", "R", "F"]
    killed = step(Spec(total=3, test_jobs=0, retries=0, killed=True), failed.jobs, found)
    assert killed.state == tasks.KILLED
    assert killed.delete == (("t.j1-0", "the task was killed"),)
    assert killed.jobs.letters == ["C", "K", "F"]
    found[1] = attempt(1, 0, "Exited", 137)
    retried = step(Spec(total=3, test_jobs=0, retries=0, retry=1), killed.jobs, found)
    assert retried.start == ((1, 1), (2, 1))
    assert retried.jobs.letters == ["C", "R", "R"]
    assert retried.jobs.observed_retry == 1
    assert retried.state == tasks.RUNNING


def test_failed_state_waits_for_the_other_jobs() -> None:
    spec = Spec(total=2, test_jobs=0, retries=0)
    jobs = step(spec, Jobs.new(2)).jobs
    running = step(spec, jobs, [attempt(0, 0, "Exited", 1), attempt(1, 0)])
    assert running.state == tasks.RUNNING and running.counts[tasks.JOB_FAILED] == 1
    over = step(spec, running.jobs, [attempt(0, 0, "Exited", 1), attempt(1, 0, "Exited", 0)])
    assert over.state == tasks.FAILED and over.message == "1 of 2 jobs failed"


def test_no_credit_stops_running_jobs_without_a_failure_and_starts_none() -> None:
    spec = Spec(total=4, test_jobs=0, retries=0, parallelism=2)
    jobs = step(spec, Jobs.new(4)).jobs
    live = [attempt(0, 0), attempt(1, 0, "Exited", 0)]
    held = step(Spec(total=4, test_jobs=0, retries=0, parallelism=2, held="no credit"),
                jobs, live)
    assert held.start == ()
    assert held.delete == (("t.j0-0", "no credit"),)
    assert held.jobs.letters == ["P", "C", "P", "P"]
    assert held.jobs.failures == [0, 0, 0, 0]
    assert held.message == "no credit"
    # Credit back while job 0's attempt is still stopping: it is not rerun yet, and it
    # counts against parallelism.
    stopping = [attempt(0, 0, terminating=True), attempt(1, 0, "Exited", 0)]
    assert step(spec, held.jobs, stopping).start == ((2, 0),)
    gone = [attempt(1, 0, "Exited", 0)]
    back = step(spec, held.jobs, gone)
    assert back.start == ((0, 1), (2, 0))


def test_killed_jobs_stay_killed_when_killed_is_unset_without_a_retry() -> None:
    jobs = Jobs(["C", "K", "F"], [1, 1, 1], [0, 0, 1])
    result = step(Spec(total=3, test_jobs=0, retries=0), jobs,
                  [attempt(0, 0, "Exited", 0), attempt(2, 0, "Exited", 1)])
    assert result.state == tasks.KILLED and result.start == ()
    assert "task retry" in result.message
