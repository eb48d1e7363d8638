"""``import pymimalloc`` loads no module of the standard library that only a rare path needs: tracemalloc.py (and the
pickle, linecache and tokenize it brings) for install()'s check of tracemalloc, difflib for a misspelt option's
message. Run in a fresh interpreter, where nothing is loaded yet."""

from __future__ import annotations

from childproc import describe, run

RARE_PATHS_ONLY = ["tracemalloc", "pickle", "difflib"]


def test_import_and_install_load_no_module_of_a_rare_path() -> None:
    code = ("import sys, pymimalloc\npymimalloc.install()\npymimalloc.build_info()\n"
            f"print(sorted(m for m in {RARE_PATHS_ONLY!r} if m in sys.modules))")
    result = run(["-c", code])  # from another folder than a checkout's root, whose source folder has no module
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    assert result.stdout.strip() == "[]"


def test_a_forked_child_uses_every_name_while_another_thread_was_reaching_one() -> None:
    """Every public name is bound by ``import pymimalloc`` itself. Were one imported at first use, a child forked
    while another thread imported it would wait forever for that module's import lock (CPython keeps it held in
    the child); this is how the lazy version of the package was found to hang."""
    code = (
        "import os, signal, threading, time, pymimalloc\n"
        "names = sorted(pymimalloc.__all__)\n"
        "t = threading.Thread(target=lambda: [getattr(pymimalloc, n) for n in names])\n"
        "t.start()\n"
        "time.sleep(0.002)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    signal.alarm(20)\n"
        "    [getattr(pymimalloc, n) for n in names]\n"
        "    with pymimalloc.Heap() as heap:\n"
        "        heap.malloc(8)\n"
        "    os._exit(0)\n"
        "t.join()\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    result = run(["-c", code])
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    assert result.stdout.strip() == "0"


# what PYMIMALLOC_INSTALL=1 adds to a bare interpreter's modules: the compiled module, cffi's backend, the two
# start-up files' imports (importlib.machinery, _tracemalloc, and warnings, which importlib's package imports). Not
# __future__: the start-up files do without `from __future__ import annotations` (16 KiB less in every process)
START_UP_MODULES = {"_cffi_backend", "_pymimalloc_startup", "_tracemalloc", "importlib",
                    "importlib._bootstrap", "importlib._bootstrap_external", "importlib.machinery",
                    "pymimalloc._mimalloc", "pymimalloc._mimalloc.lib", "warnings"}


def test_the_start_up_path_loads_no_module_beyond_its_own() -> None:
    """``PYMIMALLOC_INSTALL=1`` loads neither the package nor ``importlib.util``: on 3.11 that imports contextlib,
    collections and functools, and a bare interpreter's start peaked 1.5 MiB above a plain one's with it, 0.92 MiB
    without (2026-12-05)."""
    code = "import sys; print(' '.join(sorted(sys.modules)))"
    plain = run(["-c", code], drop=("PYMIMALLOC_INSTALL",))
    started = run(["-c", code], env={"PYMIMALLOC_INSTALL": "1"})
    assert plain.returncode == 0 and started.returncode == 0, describe(started.returncode) + started.stderr
    assert set(started.stdout.split()) - set(plain.stdout.split()) <= START_UP_MODULES
    assert "pymimalloc._mimalloc" in started.stdout.split()


def test_the_start_up_finds_the_package_past_a_finder_that_wants_three_arguments() -> None:
    """``_pymimalloc_startup`` asks each finder of ``sys.meta_path`` as importlib does, with three arguments: a
    finder declared ``find_spec(self, fullname, path, target)`` made the start print a traceback (a review, 2026-12-05)."""
    code = ("import os, sys\n"
            "class Finder:\n"
            "    def find_spec(self, fullname, path, target):\n"
            "        return None\n"
            "sys.meta_path.insert(0, Finder())\n"
            "import _pymimalloc_startup\n"
            "print(any(os.path.isfile(os.path.join(f, '_startup.py')) for f in _pymimalloc_startup._package_folders()))")
    result = run(["-c", code], drop=("PYMIMALLOC_INSTALL",))
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    assert (result.stdout.strip(), result.stderr) == ("True", "")


def test_the_two_start_up_files_agree_across_versions() -> None:
    """``_pymimalloc_startup.py`` (a top-level module) calls ``pymimalloc/_startup.py``'s ``main()`` with no argument,
    as every version did: a checkout on ``PYTHONPATH`` pairs one with the other's older copy (a ``main(folders)``
    of 2026-12-05 made that start print a traceback)."""
    import inspect

    from pymimalloc import _startup

    assert inspect.signature(_startup.main).parameters == {}
