"""The module's code that a program under install() runs sits together (csrc/pmi_hot_text.ld, written by
benchmarks/hot_text.py), so the kernel maps only its windows of the file into the process: 92-140 KiB of the
module's 214 KiB of code, where all of it was resident before (2026-12-05, Rss of our mapping). The list is
profiled on 3.11, 3.12 and 3.13."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import pymimalloc
from builds import memory_checker_build
from childproc import run

INFO = pymimalloc.build_info()


def gnu_ld() -> bool:
    if shutil.which("ld") is None:
        return False
    return "GNU ld" in subprocess.run(["ld", "--version"], capture_output=True, text=True).stdout


LINKER_CHOSEN = [name for name in ("PYMIMALLOC_HOT_TEXT", "LDFLAGS", "LDSHARED", "CC") if os.environ.get(name)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the layout is made for Linux's fault-around")
@pytest.mark.skipif(bool(LINKER_CHOSEN), reason=f"the build's environment chose: {LINKER_CHOSEN}")
def test_the_build_links_with_the_hot_text_script_where_the_linker_can() -> None:
    """With the default toolchain and GNU ld, the layout is on (it falls back quietly where a linker refuses it)."""
    if gnu_ld():
        assert INFO["hot_text"] is True, INFO


@pytest.mark.skipif(not INFO.get("hot_text"), reason="built without the hot-text script")
@pytest.mark.skipif(INFO["debug"] != 0 or memory_checker_build() or not INFO["lto"],
                    reason="the list is profiled on release builds with link-time optimisation; others run other code")
@pytest.mark.parametrize("how", ["startup", "install"])
def test_code_that_ran_under_install_is_in_the_hot_section(how: str) -> None:
    """A function missing from the list runs in every run. About one run in 25 also runs some cold code on a rare
    path (not found yet: a window of pages between the cffi wrappers and the bench kernels), so a run with stray
    pages is tried again, up to three runs."""
    outputs = []
    for _ in range(3):
        result = run(["hot_text.py", *(["install"] if how == "install" else [])],
                     env={"PYMIMALLOC_INSTALL": "1"} if how == "startup" else None, drop=("PYMIMALLOC_INSTALL",))
        assert result.returncode == 0, result.stderr
        *stray, last = result.stdout.splitlines()
        assert last.startswith("checked "), result.stdout
        if not stray:
            return
        outputs.append(result.stdout)
    pytest.fail("resident code away from the hot code in three runs (benchmarks/hot_text.py rewrites the list):\n"
                + "\n".join(outputs))
