"""Imported at interpreter start by ``pymimalloc.pth``, and only when ``PYMIMALLOC_INSTALL`` is set.

A ``.pth`` line can import only a top-level module, and importing ``pymimalloc`` at start would load the
whole package into every program. So this module finds the package without importing it (through every
import finder: an editable install's too) and runs ``pymimalloc/_startup.py`` from there, which installs
mimalloc as Python's allocator (read that file for the rest).
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _run() -> None:
    try:
        package = importlib.util.find_spec("pymimalloc")
    except (ImportError, ValueError):
        package = None
    for folder in (package.submodule_search_locations or []) if package is not None else []:
        spec = importlib.util.spec_from_file_location("pymimalloc._startup", os.path.join(folder, "_startup.py"))
        if spec is not None and spec.loader is not None and os.path.isfile(str(spec.origin)):
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.main()
            return
    if sys.stderr is not None:  # closed: print would write to stdout, into the program's output
        print("pymimalloc: not installed as Python's allocator: pymimalloc is not installed in this interpreter",
              file=sys.stderr)


_run()
