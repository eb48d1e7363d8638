"""The one way tests run threads: start one thread per target, join them all, then raise in the caller what a
worker raised, so that a failure in a thread fails the test. Child programs in tests/children/ import it too
(childproc puts this folder on their path)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


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
