"""The package's type hints hold: ``mypy --strict`` passes on the installed copy (it ships py.typed)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pymimalloc


def test_mypy_strict_is_clean() -> None:
    # run beside the package that was imported (site-packages, or the checkout of an editable install), so
    # mypy checks the copy under test and not some other one
    package_parent = pathlib.Path(pymimalloc.__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "pymimalloc"],
        cwd=package_parent, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
