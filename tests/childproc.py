"""The one way tests run a child program: a real file in tests/children/, or a few lines of code, in a fresh
interpreter with a watchdog that dumps every thread's stack before the hard timeout."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

CHILDREN = pathlib.Path(__file__).parent / "children"


def describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


def run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0, drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``python -X faulthandler <args>`` with ``env`` added to this environment (less the ``drop`` names);
    never raises for the child's outcome. A hang past ``timeout`` kills its whole process group."""
    environment = {key: value for key, value in os.environ.items() if key not in drop}
    environment.update(env or {})
    with subprocess.Popen(
        [sys.executable, "-X", "faulthandler", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        errors="replace", env=environment, cwd=CHILDREN, start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return subprocess.CompletedProcess(proc.args, -signal.SIGKILL, out, f"hung for {timeout} s\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_program(name: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``tests/children/<name>`` and fail unless it exits 0."""
    result = run([str(CHILDREN / name), *args], **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, f"{name} {describe(result.returncode)}\n{result.stdout}\n{result.stderr}"
    return result
