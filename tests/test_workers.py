"""Decoder processes: a result comes back from its own task, and a dead worker is never a hang."""

import os
import signal
import time
from collections.abc import Iterator

import pytest

from classify_batch.jobs.workers import Pool, WorkerDied


def big(megabytes: int) -> bytes:
    return b"x" * (megabytes * 1024 * 1024)


def pid_and_value(value: int) -> tuple[int, int]:
    return os.getpid(), value


def fail(_: int) -> None:
    raise ValueError("a bug in the task")


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    # A hang is the bug these tests are about: turn it into a failure.
    def alarm(signum, frame):
        raise TimeoutError("the pool hung")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_results_come_back_for_their_own_tickets():
    pool = Pool(2, pid_and_value)
    try:
        tickets = [pool.submit(i) for i in range(20)]
        values = [pool.result(t)[1] for t in reversed(tickets)]
        assert values == list(reversed(range(20)))
    finally:
        pool.close()


def test_a_worker_killed_while_sending_a_big_result_is_reported_not_waited_for():
    pool = Pool(2, big)
    try:
        ticket = pool.submit(64)  # far more than a pipe holds: the worker blocks mid-message
        time.sleep(1.0)
        for pid in pool.pids():
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerDied):
            pool.result(ticket)
        # The dead are replaced: the pool still works.
        assert len(pool.result(pool.submit(1))) == 1024 * 1024
    finally:
        pool.close()


def test_an_exception_in_a_task_is_a_failed_task_and_the_pool_goes_on():
    pool = Pool(1, fail)
    try:
        with pytest.raises(WorkerDied):
            pool.result(pool.submit(1))
        with pytest.raises(WorkerDied):
            pool.result(pool.submit(2))
    finally:
        pool.close()


def test_close_leaves_no_process_behind():
    pool = Pool(2, pid_and_value)
    pids = pool.pids()
    pool.result(pool.submit(1))
    pool.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_closing_with_a_task_running_does_not_wait_for_it():
    pool = Pool(1, sleep)
    pids = pool.pids()
    pool.submit(600)  # waiting for it would trip the no_hang alarm
    pool.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)


def fail_on_one(value: int) -> int:
    if value == 1:
        os._exit(1)  # a codec crash, as far as the pool can tell
    return value


def test_the_task_waiting_behind_a_crash_is_run_by_the_replacement():
    pool = Pool(1, fail_on_one)
    try:
        crashing, waiting = pool.submit(1), pool.submit(2)  # the second waits in the pipe
        with pytest.raises(WorkerDied):
            pool.result(crashing)
        assert pool.result(waiting) == 2
    finally:
        pool.close()


def echo(data: bytes) -> bytes:
    return data


def test_big_tasks_are_not_queued_behind_a_running_one():
    # A task sent ahead waits unread in the worker's pipe. One bigger than the pipe holds would
    # block the main process in send while the worker blocks sending it its result.
    pool = Pool(1, echo)
    try:
        tickets = [pool.submit(big(2)) for _ in range(3)]
        assert [len(pool.result(t)) for t in tickets] == [2 * 1024 * 1024] * 3
    finally:
        pool.close()
