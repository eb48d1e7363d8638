"""Runs one child program of this folder the way childproc.run_program promises: argv is the watchdog's
seconds, 1 to check mimalloc's error count at the end (0 not to), the program's file name and its arguments.

A hang past the watchdog dumps every thread's stack and exits 1. The program runs as ``__main__``, and its
objects stay alive until the interpreter exits, as a script's do."""

import faulthandler
import pathlib
import runpy
import sys

watchdog, check, name, *arguments = sys.argv[1:]
faulthandler.dump_traceback_later(float(watchdog), exit=True)
path = str(pathlib.Path(__file__).with_name(name))
sys.argv = [path, *arguments]
namespace = runpy.run_path(path, run_name="__main__")
if check == "1":
    from pymimalloc._core import lib

    assert lib.pmi_error_count() == 0, (
        f"mimalloc reported {lib.pmi_error_count()} error(s), last errno {lib.pmi_error_last()}"
    )
