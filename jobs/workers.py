"""Decoder processes, each with a pipe of its own, so that one that dies is noticed, not waited for.

concurrent.futures' ProcessPoolExecutor sends every result through one shared pipe: a worker
killed while writing a big result (the OOM killer, a codec crash at the wrong moment) leaves half
a message there and the reader waits for the rest forever, since the other workers keep the pipe
open. Here a worker's death closes its own pipe, and the reader gets EOF at once. There are no
helper threads either: the main process hands out tasks and collects results itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from classify_batch.jobs.inherit import (
    drop_inherited,
    keep_from_workers,
    registered,
    release_from_workers,
)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
Setup = tuple[Callable[..., Any], tuple]

# How long close() waits for an idle worker to leave before killing it.
_LEAVE_SECONDS = 5.0


class WorkerDied(Exception):
    """The process running a task died before returning its result."""


class Pool:
    """`workers` processes that run `function(*args)` for submitted tasks, in any order."""

    def __init__(
        self, workers: int, function: Callable[..., Any], setup: Setup | None = None
    ) -> None:
        # setup: (function, args) each worker runs once when it starts (memory admission's
        # shared semaphore, see jobs/memory.py), replacements included.
        self._function = function
        self._setup = setup
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, tuple[_Worker, int]] = {}
        self._waiting: deque[tuple[int, tuple]] = deque()
        self._done: dict[int, tuple[bool, Any]] = {}
        self._next_ticket = 0
        for _ in range(workers):
            self._idle.append(_Worker(function, setup))

    def submit(self, *args: Any) -> int:
        """Queue a task; returns the ticket to ask for its result with."""
        ticket = self._next_ticket
        self._next_ticket += 1
        self._waiting.append((ticket, args))
        self._dispatch()
        return ticket

    def result(self, ticket: int) -> Any:
        """The task's result, once it is in; raises WorkerDied if its process died."""
        while ticket not in self._done:
            self._collect()
        ok, value = self._done.pop(ticket)
        if not ok:
            raise WorkerDied
        return value

    def pids(self) -> list[int]:
        workers = self._idle + [worker for worker, _ in self._busy.values()]
        return [worker.process.pid for worker in workers if worker.process.pid is not None]

    def close(self) -> None:
        """Stop every worker. Busy ones are killed: closing before the last result means the
        run is being abandoned (an error, SIGTERM, Ctrl-C), and one photo can take seconds."""
        idle, busy = self._idle, [worker for worker, _ in self._busy.values()]
        self._idle, self._busy = [], {}
        self._waiting.clear()
        for worker in busy:
            worker.process.kill()
        for worker in idle:
            worker.stop()
        for worker in idle + busy:
            worker.join()

    def _dispatch(self) -> None:
        while self._idle and self._waiting:
            worker = self._idle.pop()
            ticket, args = self._waiting.popleft()
            try:
                worker.conn.send(args)
            except OSError:
                # Died while idle: its replacement takes the task.
                worker.join()
                self._waiting.appendleft((ticket, args))
                self._idle.append(_Worker(self._function, self._setup))
                continue
            self._busy[worker.conn] = (worker, ticket)

    def _collect(self) -> None:
        if not self._busy:
            raise RuntimeError("no task is running")  # a ticket that was never submitted
        for conn in wait(list(self._busy)):
            assert isinstance(conn, Connection)
            worker, ticket = self._busy.pop(conn)
            try:
                self._done[ticket] = (True, conn.recv())
                self._idle.append(worker)
            except (EOFError, OSError):
                # Its end of the pipe closed mid-task or mid-result: the process is gone.
                self._done[ticket] = (False, None)
                worker.join()
                self._idle.append(_Worker(self._function, self._setup))
        self._dispatch()


class _Worker:
    def __init__(self, function: Callable[..., Any], setup: Setup | None = None) -> None:
        # A fork copies only the calling thread: if another thread holds a lock at that moment
        # (onnxruntime's thread pool, say), the child can wait on it forever. Fork only a process
        # with no other thread; otherwise start from a clean forkserver. Forked before the model
        # loads, workers start in a millisecond with numpy and Pillow already imported.
        method = "fork" if _single_threaded() else "forkserver"
        context: Any = multiprocessing.get_context(method)  # typeshed's BaseContext lacks Process
        self.conn, child = context.Pipe()
        # A forked child gets copies of our end of its pipe and of every other worker's: it must
        # drop them, or the main process's death would never reach anyone as EOF. A forkserver's
        # children inherit nothing of ours.
        forked = method == "fork"
        inherited = [*registered(), self.conn.fileno()] if forked else []
        parent = os.getpid() if forked else None
        self.process: BaseProcess = context.Process(
            target=_serve, args=(child, function, inherited, parent, setup), daemon=True
        )
        self.process.start()
        child.close()  # now only the worker holds its end: its death is our EOF
        keep_from_workers(self.conn.fileno())

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # already gone
            self.conn.send(None)

    def join(self) -> None:
        self.process.join(_LEAVE_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        release_from_workers(self.conn.fileno())
        self.conn.close()


def _serve(
    conn: Connection,
    function: Callable[..., Any],
    inherited: list[int],
    parent: int | None,
    setup: Setup | None = None,
) -> None:
    _die_with_parent(parent)
    drop_inherited(inherited)
    # Ctrl-C goes to the whole process group; the main process decides what happens, and a
    # worker must not print its own KeyboardInterrupt traceback. The main process's handlers
    # for the stop signals (copied by fork) would unwind a worker as if it were the run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_DFL)
    if setup is not None:
        setup[0](*setup[1])
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return  # the main process is gone
        if args is None:
            return
        try:
            result = function(*args)
        except Exception:
            # The task's function reports bad inputs itself; an exception here is a bug or no
            # memory. Leaving closes the pipe, and the main process retries the files one by one.
            return
        try:
            conn.send(result)
        except OSError:
            return  # the main process is gone


def _die_with_parent(parent: int | None) -> None:
    """Linux kills this process when its parent dies, even by SIGKILL; elsewhere the parent's
    death still reaches an idle worker as EOF on its pipe, and a busy one when it replies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(0)  # the parent died before prctl took effect


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1  # native threads too, not only Python's
    except OSError:
        return False
