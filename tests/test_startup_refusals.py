"""Every path that starts mimalloc refuses the same options with the same message: ``import pymimalloc`` (a
RuntimeWarning) and ``PYMIMALLOC_INSTALL`` at interpreter start (the message on stderr). Before, the start-up
path skipped the refusals: destroy_on_exit hung every process at exit. And a refused ``install()`` leaves
tracemalloc's traces alone."""

from __future__ import annotations

import importlib

import pytest

from childproc import CHILDREN, describe, run

REFUSED = importlib.import_module("pymimalloc.options").REFUSED  # the module, not the options object
BAD_VALUES = {"destroy_on_exit": "1", "guarded_sample_rate": "1", "visit_abandoned": "0"}


def _pth_installed() -> bool:
    import site

    return any((__import__("pathlib").Path(d) / "pymimalloc.pth").is_file() for d in site.getsitepackages())


def test_every_refused_option_is_in_the_table() -> None:
    assert set(BAD_VALUES) == set(REFUSED)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_import_puts_a_refused_option_back_with_a_warning(name: str) -> None:
    env = {f"MIMALLOC_{name.upper()}": BAD_VALUES[name]}
    result = run(["-W", "always", "-c", f"import pymimalloc; print(pymimalloc.options[{name!r}])"], env=env,
                 timeout=60, drop=("PYMIMALLOC_INSTALL",))
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    assert result.stdout.split() == [str(REFUSED[name][0])]
    assert f"RuntimeWarning: pymimalloc set mimalloc option '{name}'" in result.stderr


@pytest.mark.skipif(not _pth_installed(), reason="pymimalloc.pth is not in site-packages")
@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_start_up_puts_a_refused_option_back_with_the_same_message(name: str) -> None:
    env = {f"MIMALLOC_{name.upper()}": BAD_VALUES[name], "PYMIMALLOC_INSTALL": "1"}
    program = "import sys; print('pymimalloc' in sys.modules); x = [str(i) * 3 for i in range(100000)]"
    started = run(["-c", program], env=env, timeout=60)  # hung forever at exit before (destroy_on_exit)
    assert started.returncode == 0, describe(started.returncode) + started.stderr
    assert started.stdout.split() == ["False"]  # the short path ran, without the package
    imported = run(["-W", "always", "-c", "import pymimalloc"], env=env, timeout=60, drop=("PYMIMALLOC_INSTALL",))
    message = next(line for line in started.stderr.splitlines() if "pymimalloc set mimalloc option" in line)
    assert message.startswith(f"pymimalloc set mimalloc option '{name}'")
    assert message in imported.stderr  # the warning's text, word for word


@pytest.mark.skipif(not _pth_installed(), reason="pymimalloc.pth is not in site-packages")
@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_start_up_through_the_package_says_so_on_stderr_even_under_w_error(name: str) -> None:
    """tracemalloc tracing at start sends PYMIMALLOC_INSTALL through the package's import, whose RuntimeWarning
    -W error made an exception: site printed a traceback and left Python's allocator alone (found by review)."""
    env = {f"MIMALLOC_{name.upper()}": BAD_VALUES[name], "PYMIMALLOC_INSTALL": "1", "PYTHONTRACEMALLOC": "1"}
    program = "import sys, pymimalloc; print('pymimalloc' in sys.modules, pymimalloc.installed())"
    started = run(["-W", "error", "-c", program], env=env, timeout=60)
    assert started.returncode == 0, describe(started.returncode) + started.stderr
    assert started.stdout.split() == ["True", "('mem',", "'obj')"]
    assert "Traceback" not in started.stderr and "Error processing line" not in started.stderr, started.stderr
    assert started.stderr.startswith(f"pymimalloc set mimalloc option '{name}'"), started.stderr


@pytest.mark.parametrize("flags", [["-X", "dev"], ["-X", "tracemalloc=5"]])
def test_a_refused_install_keeps_tracemalloc_traces(flags: list[str]) -> None:
    env = {"PYTHONMALLOC": "debug"} if flags == ["-X", "tracemalloc=5"] else {}
    result = run([*flags, str(CHILDREN / "startup_refused_install_traces.py")], env=env, timeout=120,
                 drop=("PYMIMALLOC_INSTALL", "PYTHONMALLOC"))
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    assert result.stdout.split() == ["True", "True", "True"], result.stdout + result.stderr


@pytest.mark.skipif(not _pth_installed(), reason="pymimalloc.pth is not in site-packages")
@pytest.mark.parametrize("case", ["a value it cannot honour", "a refused option", "a refused option, package path"])
def test_start_up_says_nothing_on_stdout_when_stderr_is_closed(case: str) -> None:
    """With stderr closed, sys.stderr is None and print(file=None) writes to stdout: the start-up's messages
    went into the program's output (found by review). Python's own warnings are dropped then; so are ours."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYMIMALLOC_INSTALL="bogus" if case.startswith("a value") else "1")
    if "option" in case:
        env["MIMALLOC_DESTROY_ON_EXIT"] = "1"
    flags = ["-X", "tracemalloc"] if "package" in case else []
    program = [sys.executable, *flags, "-c", "import sys; sys.stdout.write('DATA\\n')"]
    closed = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *program], env=env, cwd=CHILDREN,
                            stdout=subprocess.PIPE, text=True, timeout=60, check=False)
    assert (closed.returncode, closed.stdout) == (0, "DATA\n")
    shown = subprocess.run(program, env=env, cwd=CHILDREN, capture_output=True, text=True, timeout=60, check=False)
    assert shown.stdout == "DATA\n" and "pymimalloc" in shown.stderr  # with stderr open, the message is there


@pytest.mark.parametrize("key", ["MIMALLOC_MAX_VABITS", "mimalloc_max_vabits", "Mimalloc_Max_Vabits"])
def test_max_vabits_in_any_case_is_refused_before_mimalloc_starts(key: str) -> None:
    # mimalloc reads its variables whatever their case: a lower-case spelling crashed the import (found by review)
    result = run(["-c", "import pymimalloc"], env={key: "40"}, timeout=60, drop=("PYMIMALLOC_INSTALL",))
    assert result.returncode == 1, describe(result.returncode) + result.stderr
    assert f"ImportError: {key}=40 is not supported by pymimalloc" in result.stderr
    started = run(["-c", "print('ran')"], env={key: "40", "PYMIMALLOC_INSTALL": "1"}, timeout=60)
    assert started.returncode == 0 and started.stdout.strip() == "ran", describe(started.returncode) + started.stderr
