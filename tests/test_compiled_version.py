"""The compiled module carries the version it was built for, and the package refuses another version's module."""
from __future__ import annotations

import subprocess
import sys
import tempfile

import pymimalloc
from pymimalloc._core import ffi, lib


def test_the_module_was_built_for_this_version() -> None:
    assert ffi.string(lib.pmi_package_version()).decode() == pymimalloc.__version__


def test_python_files_of_another_version_refuse_the_module_naming_both() -> None:
    # the Python files claim another version than the compiled module was built for (as a checkout whose
    # version moved on since its in-place build does)
    code = (
        "import sys, types\n"
        "fake = types.ModuleType('pymimalloc._version'); fake.__version__ = '99.0.0'\n"
        "sys.modules['pymimalloc._version'] = fake\n"
        "import pymimalloc\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=tempfile.gettempdir())
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: pymimalloc 99.0.0 "), result.stderr
    assert f"built for pymimalloc {pymimalloc.__version__} " in last and "pip install -e ." in last
