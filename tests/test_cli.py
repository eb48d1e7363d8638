"""``python -m pymimalloc run`` behaves exactly as ``python`` does with the same arguments."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from childproc import CHILDREN, run


@pytest.fixture
def folder(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copy(CHILDREN / "cli_prog.py", tmp_path / "prog.py")
    return tmp_path


def _python(args: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return run(args, cwd=cwd, timeout=120, drop=("PYMIMALLOC_INSTALL",))


CASES = {
    "command with arguments": ["-c", "import sys; print(sys.argv, repr(sys.path[0]), __name__, __file__)", "a", "-b"],
    "command that raises": ["-c", "def f():\n    raise KeyError(1)\nf()"],
    "command that exits": ["-c", "import sys; sys.exit(3)"],
    "command interrupted": ["-c", "import os, signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\ndef f():\n    os.kill(os.getpid(), signal.SIGINT)\nf()"],
    "command missing": ["-c"],
    # the program's sys.excepthook raising, None or deleted: Python's own messages, without ours (found by review)
    "command raises, its excepthook raises": ["-c", "import sys\nsys.excepthook = lambda *a: 1/0\nraise ValueError(1)"],
    "command interrupted, its excepthook raises": [
        "-c", "import os, signal, sys\nsys.excepthook = lambda *a: 1/0\nsignal.signal(signal.SIGINT, signal.default_int_handler)\nos.kill(os.getpid(), signal.SIGINT)"],
    "command raises, its excepthook None": ["-c", "import sys\nsys.excepthook = None\nraise ValueError(1)"],
    "command interrupted, its excepthook deleted": [
        "-c", "import os, signal, sys\ndel sys.excepthook\nsignal.signal(signal.SIGINT, signal.default_int_handler)\nos.kill(os.getpid(), signal.SIGINT)"],
    "command raises a BaseException": ["-c", "class Stop(BaseException):\n    pass\nraise Stop(1)"],
    "command raises, atexit reads sys.last_value": [
        "-c", "import atexit, sys\natexit.register(lambda: print(repr(sys.last_value)))\n1/0"],
    "command with an excepthook that exits": ["-c", "import sys\nsys.excepthook = lambda *a: sys.exit(5)\nraise ValueError(1)"],
    "module": ["-m", "prog", "x"],
    "module that raises": ["-m", "prog", "fail"],
    "module that exits": ["-m", "prog", "exit"],
    "module interrupted": ["-m", "prog", "interrupt"],
    "no such module": ["-m", "nosuchmod_pymimalloc"],
    "module missing": ["-m"],
    "script": ["prog.py", "x"],
    "script that raises": ["prog.py", "fail"],
    "script interrupted": ["prog.py", "interrupt"],
    "no such script": ["nosuch.py"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_run_behaves_as_python(case: str, folder: pathlib.Path) -> None:
    args = CASES[case]
    plain = _python(args, folder)
    run = _python(["-m", "pymimalloc", "run", *args], folder)
    if case.endswith("missing"):  # Python's own usage line names its options, ours the run command
        assert run.returncode == plain.returncode == 2
        assert run.stderr.splitlines()[0] == plain.stderr.splitlines()[0] == f"Argument expected for the {args[0]} option"
        return
    assert (run.returncode, run.stdout, run.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    if "raises" in case or "interrupted" in case:
        assert "Traceback" in run.stderr and "pymimalloc" not in run.stderr


def test_run_installs_mimalloc_first(folder: pathlib.Path) -> None:
    probe = "import pymimalloc; print(pymimalloc.installed())"
    assert _python(["-m", "pymimalloc", "run", "-c", probe], folder).stdout == "('mem', 'obj')\n"
    assert _python(["-m", "pymimalloc", "run", "--raw", "-c", probe], folder).stdout == "('raw', 'mem', 'obj')\n"
    assert _python(["-c", probe], folder).stdout == "()\n"
