"""The one way tests run a child program: a real file in tests/children/, or a one-line command, in a fresh
interpreter with a watchdog that dumps every thread's stack before the hard timeout.

Children run with tests/children/ as their folder and tests/ on their path (for ``threads.run_threads``), never
the checkout's root, so they import the installed package, not the source folder."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

TESTS = pathlib.Path(__file__).parent
CHILDREN = TESTS / "children"


def describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


def run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0, drop: tuple[str, ...] = (),
    cwd: str | os.PathLike[str] = CHILDREN,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -X faulthandler <args>`` in ``cwd`` with ``env`` added to this environment (less the ``drop``
    names); never raises for the child's outcome. A hang past ``timeout`` kills its whole process group."""
    environment = {key: value for key, value in os.environ.items() if key not in drop}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    with subprocess.Popen(
        [sys.executable, "-X", "faulthandler", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        errors="replace", env=environment, cwd=cwd, start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return subprocess.CompletedProcess(proc.args, -signal.SIGKILL, out, f"hung for {timeout} s\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def empty(stderr: str) -> bool:
    return stderr == ""


def only_mimalloc_reports(stderr: str) -> bool:
    """Checked builds print mimalloc's warnings and errors (show_errors); nothing else may appear."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return all(line.startswith("mimalloc: ") and "assertion failed" not in line for line in lines)


def run_program(
    name: str,
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    python_args: tuple[str, ...] = (),
    stderr_ok: Callable[[str], bool] = empty,
    check_mimalloc_errors: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``tests/children/<name> <args>`` (through children/checked.py); fail the test unless it exits 0,
    ``stderr_ok`` accepts its stderr (by default: empty) and, with ``check_mimalloc_errors``, mimalloc reported
    no error. A hang dumps every thread's stack 5 s before ``timeout``. Returns the finished process."""
    watchdog = max(1.0, timeout - 5.0)
    checked = [str(CHILDREN / "checked.py"), str(watchdog), str(int(check_mimalloc_errors)), name, *args]
    result = run([*python_args, *checked], env=env, timeout=timeout, drop=drop)
    if result.returncode != 0 or not stderr_ok(result.stderr):
        pytest.fail(
            f"{name} {describe(result.returncode)}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result
