"""Imported at interpreter start by ``pymimalloc.pth``, and only when ``PYMIMALLOC_INSTALL`` is set.

A ``.pth`` line can import only a top-level module, and importing ``pymimalloc`` at start would load the
whole package into every program. So this module finds the package without importing it (through every
import finder: an editable install's too) and runs ``pymimalloc/_startup.py`` from there, which installs
mimalloc as Python's allocator (read that file for the rest).
"""

# no `from __future__ import annotations`: at start it would load __future__ into every process (16 KiB)

import importlib.machinery
import os
import sys


def _package_folders() -> list[str]:
    """The pymimalloc package's folders, from the finders of ``sys.meta_path`` (an editable install's too), as
    ``importlib.util.find_spec`` finds a top-level package. Not through importlib.util itself: on 3.11 it imports
    contextlib, collections and functools, 0.65 MiB of a bare interpreter's peak RSS (2026-12-05)."""
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        try:
            spec = None if find_spec is None else find_spec("pymimalloc", None, None)  # importlib passes three
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            return list(spec.submodule_search_locations or [])
    return []


def _run() -> None:
    for folder in _package_folders():
        path = os.path.join(folder, "_startup.py")
        if os.path.isfile(path):
            loader = importlib.machinery.SourceFileLoader("pymimalloc._startup", path)
            module = type(sys)(loader.name)
            module.__file__, module.__loader__ = path, loader
            loader.exec_module(module)
            module.main()  # no argument, ever: a checkout on PYTHONPATH may pair this file with an older package
            return
    if sys.stderr is not None:  # closed: print would write to stdout, into the program's output
        print("pymimalloc: not installed as Python's allocator: pymimalloc is not installed in this interpreter",
              file=sys.stderr)


_run()
