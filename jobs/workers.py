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
from multiprocessing.reduction import ForkingPickler
from typing import Any

from classify_batch.jobs.inherit import (
    drop_inherited,
    keep_from_workers,
    registered,
    release_from_workers,
)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
Setup = tuple[Callable[..., Any], tuple]

_Task = tuple[int, memoryview]  # (ticket, the pickled args)

# How long close() waits for an idle worker to leave before killing it.
_LEAVE_SECONDS = 5.0

# A worker is sent its next task while it runs one, so that it never waits for the main process
# to come back from onnxruntime or the walk to hand it work (measured: two decoders on 10,000
# MNIST PNGs were busy only ~60% of the time with one task each).
_TASKS_PER_WORKER = 2
# ... but only a task this small: one that waits unread in the pipe must fit in its buffer
# (~200 kB for a Unix socket), or the main process blocks in send while the worker blocks
# sending it a result. A task of 256 MNIST paths is ~15 kB.
_AHEAD_BYTES = 32 * 1024


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
        self._workers = [_Worker(function, setup) for _ in range(workers)]
        # Tasks are pickled once, when submitted, not at every try to send one ahead (a big
        # one is tried at every result until a worker is idle).
        self._waiting: deque[_Task] = deque()
        self._done: dict[int, tuple[bool, Any]] = {}
        self._next_ticket = 0

    def submit(self, *args: Any) -> int:
        """Queue a task; returns the ticket to ask for its result with."""
        ticket = self._next_ticket
        self._next_ticket += 1
        self._waiting.append((ticket, ForkingPickler.dumps(args)))
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
        return [worker.process.pid for worker in self._workers if worker.process.pid is not None]

    def close(self) -> None:
        """Stop every worker. Busy ones are killed: closing before the last result means the
        run is being abandoned (an error, SIGTERM, Ctrl-C), and one photo can take seconds."""
        workers, self._workers = self._workers, []
        self._waiting.clear()
        for worker in workers:
            if worker.tasks:
                worker.process.kill()
            else:
                worker.stop()
        for worker in workers:
            worker.join()

    def _dispatch(self) -> None:
        while self._waiting:
            # The least loaded worker: an idle one, else one with a single task running.
            worker = min(self._workers, key=lambda w: len(w.tasks))
            queued = len(worker.tasks)
            if queued >= _TASKS_PER_WORKER:
                return
            ticket, data = self._waiting[0]
            if queued and len(data) > _AHEAD_BYTES:
                return  # waits until a worker is idle: see _AHEAD_BYTES
            self._waiting.popleft()
            try:
                worker.conn.send_bytes(data)
            except OSError:
                self._waiting.appendleft((ticket, data))
                self._lost(worker)
                continue
            worker.tasks.append((ticket, data))

    def _collect(self) -> None:
        busy = {worker.conn: worker for worker in self._workers if worker.tasks}
        if not busy:
            raise RuntimeError("no task is running")  # a ticket that was never submitted
        for conn in wait(list(busy)):
            assert isinstance(conn, Connection)
            try:
                result = conn.recv()
            except (EOFError, OSError):
                # Its end of the pipe closed mid-task or mid-result: the process is gone.
                self._lost(busy[conn])
                continue
            ticket, _ = busy[conn].tasks.popleft()
            self._done[ticket] = (True, result)
        self._dispatch()

    def _lost(self, worker: _Worker) -> None:
        """A worker died: the task it was running failed, the one waiting in its pipe goes back
        to the head of the queue, and a new worker takes its place."""
        worker.join()
        self._workers.remove(worker)
        if worker.tasks:
            ticket, _ = worker.tasks.popleft()
            self._done[ticket] = (False, None)
        self._waiting.extendleft(reversed(worker.tasks))
        self._workers.append(_Worker(self._function, self._setup))


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
        # The tasks sent to it, in order, each (ticket, pickled args): it is running the first.
        self.tasks: deque[_Task] = deque()

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
