"""The warning check CI runs over our C (python build_ffi.py --check-warnings) is not vacuous."""
from __future__ import annotations

import pathlib
import subprocess

from test_build import build_ffi  # the build script, loaded once by test_build


def test_the_warning_check_fails_on_a_warning_in_our_code(tmp_path: pathlib.Path) -> None:
    planted = tmp_path / "planted.c"
    planted.write_text('#include <stddef.h>\n#include <stdint.h>\n#include "pmi_heap.h"\n'
                       "int f(int used, int unused) { int idle; return used; }\n")
    root, _ = build_ffi.locate_source()
    command = build_ffi.warning_check_command(planted, root, build_ffi.compile_options())
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0
    assert "unused-parameter" in result.stderr and "unused-variable" in result.stderr
