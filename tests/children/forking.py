"""Fork from a process whose other threads allocate, and check each forked child's exit (imported by the fork_*
children). Importing it makes thread switches frequent and silences Python's warning about forking threads."""

import os
import signal
import sys
import time
import traceback
import warnings
import threading
from collections.abc import Callable

from threads import threads_running

warnings.filterwarnings("ignore", category=DeprecationWarning)  # 3.12+: fork() of a multi-threaded process
sys.setswitchinterval(1e-5)


def wait_for(pid: int) -> int:
    deadline = time.monotonic() + 10.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child {pid} hung for 10 s")
        time.sleep(0.001)


def fork_and_check(in_child: Callable[[], None], rounds: int = 20, pause: float | None = 0.01) -> None:
    """Fork ``rounds`` times, ``pause`` seconds apart (None: at once, still holding the GIL the last child's wait took
    back), and check that each child ran ``in_child`` and exited 0 within 10 s."""
    for i in range(rounds):
        if pause is not None:
            time.sleep(pause)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                in_child()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        status = wait_for(pid)
        assert status == 0, f"forked child {i} exited with {status}"


def fork_while_a_thread_runs(churn: Callable[[threading.Event], None], in_child: Callable[[], None],
                             rounds: int = 20, pause: float | None = 0.01) -> None:
    """Run ``churn(stop)`` in a daemon thread until ``stop`` is set, and fork_and_check(in_child, rounds, pause)
    meanwhile; then raise what churn raised."""
    stop = threading.Event()
    with threads_running(lambda: churn(stop), daemon=True):
        try:
            fork_and_check(in_child, rounds, pause)
        finally:
            stop.set()
