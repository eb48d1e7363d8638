"""Whole-process behaviour, each in a fresh interpreter: exit with live objects, the command line."""
from __future__ import annotations

import pathlib

import pymimalloc
from childproc import run, run_program


def test_exit_with_live_heaps_blocks_and_views() -> None:
    result = run_program("process_exit_with_live_objects.py", timeout=120, check_mimalloc_errors=False)
    assert result.stdout == "ok\n"


def test_main_prints_build_info_and_demo() -> None:
    result = run(["-m", "pymimalloc"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "mimalloc_version  3.4.3" in result.stdout
    assert "closed     with one live block" in result.stdout
    assert result.stderr == ""


def test_main_json() -> None:
    import json

    result = run(["-m", "pymimalloc", "--json"], timeout=120)
    assert json.loads(result.stdout) == pymimalloc.build_info()


def test_importing_the_source_folder_without_the_compiled_module_says_why() -> None:
    repo = pathlib.Path(__file__).resolve().parent.parent
    if list((repo / "pymimalloc").glob("_mimalloc*.so")):
        # an in-place (editable) build: the source folder is importable and must work
        result = run(["-c", "import pymimalloc"], cwd=repo)
        assert result.returncode == 0, result.stderr
    else:
        result = run(["-c", "import pymimalloc"], cwd=repo)
        assert "imported the source folder of a checkout" in result.stderr
