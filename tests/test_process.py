"""Whole-process behaviour, each in a fresh interpreter: exit with live objects, the command line."""
from __future__ import annotations

import pathlib
import site

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
    """A checkout's source folder (the current directory, first on the path) with no compiled module of its own
    is refused with a message that says why, unless a compiled module of the same version is loaded already
    (PYMIMALLOC_INSTALL loads the installed one at start): then the two are one version and it works. A module
    of another version is refused (tests/test_compiled_version.py). An in-place build is always importable."""
    repo = pathlib.Path(__file__).resolve().parent.parent
    for install in ("", "1"):
        result = run(["-c", "import pymimalloc, sys; print(sys.modules['pymimalloc'].__file__)"], cwd=repo,
                     env={"PYMIMALLOC_INSTALL": install})
        in_place = bool(list((repo / "pymimalloc").glob("_mimalloc*.so")))
        loaded_at_start = install == "1" and any(
            (pathlib.Path(folder) / "pymimalloc.pth").exists() for folder in site.getsitepackages()
        )
        if in_place or loaded_at_start:
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == str(repo / "pymimalloc" / "__init__.py")
        else:
            assert "imported the source folder of a checkout" in result.stderr, (install, result.stderr)
