"""The one way tests run threads: start one thread per target, join them all, then raise in the caller what a
worker raised, so that a failure in a thread fails the test. Child programs in tests/children/ import it too
(childproc puts this folder on their path)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def threads_running(
    *targets: Callable[[], object], daemon: bool = False, name: str | None = None
) -> Iterator[list[threading.Thread]]:
    """Start a thread per target (named ``<name>-<index>`` if ``name`` is given, for stack dumps) for the body of
    the ``with``; at its end join them all, then re-raise the first exception a worker raised (an exception of the
    body itself wins)."""
    raised: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:
            raised.append(exc)

    threads = [
        threading.Thread(target=guarded, args=(target,), daemon=daemon, name=name and f"{name}-{index}")
        for index, target in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    try:
        yield threads
    finally:
        for thread in threads:
            thread.join()
    if raised:
        raise raised[0]


def run_threads(*targets: Callable[[], object], daemon: bool = False, name: str | None = None) -> None:
    """Run a thread per target to its end; raise the first exception a worker raised."""
    with threads_running(*targets, daemon=daemon, name=name):
        pass


STEP_TIMEOUT = 60.0  # seconds a Worker may take for one call before outcome() calls it a hang


class Worker:
    """A thread that runs the calls submitted to it one at a time, so that what belongs to a thread persists across
    a state machine's steps (an ``as_default()`` block, its part of a heap)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any] | None]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, reply = job
            del job
            result: tuple[bool, Any]
            try:
                result = (True, call())
            except BaseException as error:  # handed to the step that submitted the call
                result = (False, error)
            del call
            reply.put(result)
            del result
            reply.put(None)  # this thread holds nothing of the result any more (a view's export, say)

    def submit(self, call: Callable[[], Any]) -> queue.Queue[tuple[bool, Any] | None]:
        reply: queue.Queue[tuple[bool, Any] | None] = queue.Queue()
        self._jobs.put((call, reply))
        return reply

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(STEP_TIMEOUT)


def outcome(reply: queue.Queue[tuple[bool, Any] | None]) -> Any:
    """The result of a call submitted to a Worker; its exception re-raised here; a hang fails the step."""
    try:
        ok, value = reply.get(timeout=STEP_TIMEOUT)  # type: ignore[misc]
        reply.get(timeout=STEP_TIMEOUT)  # the worker let go of its references
    except queue.Empty:
        raise AssertionError(f"a worker thread did not finish its step within {STEP_TIMEOUT} s (a hang)") from None
    if not ok:
        raise value
    return value
