"""The package's type hints hold: ``mypy --strict`` passes on the copy under test (it ships py.typed)."""

from __future__ import annotations

import pathlib
import site
import sys

import pymimalloc
from childproc import run


def test_mypy_strict_is_clean(tmp_path: pathlib.Path) -> None:
    # mypy finds an installed package through this interpreter's site-packages (PEP 561); an editable
    # install's import hook is invisible to it, so then the checkout is given as MYPYPATH. It runs from an
    # empty folder, so nothing in the current directory shadows what it checks.
    package_parent = pathlib.Path(pymimalloc.__file__).resolve().parent.parent
    env = {}
    if package_parent not in {pathlib.Path(p).resolve() for p in site.getsitepackages()}:
        env["MYPYPATH"] = str(package_parent)
    result = run(["-m", "mypy", "--strict", "--no-incremental", "--python-executable", sys.executable, "-p", "pymimalloc"],
                 cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found" in result.stdout
