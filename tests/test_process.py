"""Whole-process behaviour, each in a fresh interpreter: exit with live objects, the command line."""
from __future__ import annotations

import subprocess
import sys
import textwrap


import tempfile

# Run children outside the checkout, so they import the installed package, not the source folder.
_CWD = tempfile.gettempdir()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=_CWD)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return _run("-c", textwrap.dedent(code))


def test_exit_with_live_heaps_blocks_and_views() -> None:
    result = _python("""
        import pymimalloc, threading
        heaps = [pymimalloc.Heap() for _ in range(5)]
        blocks = [h.malloc(n) for h in heaps for n in (8, 4096, 1 << 21)]
        view = blocks[0].view
        closed = pymimalloc.Heap(); kept = closed.malloc(64); closed.close()
        threading.Thread(target=lambda: heaps[1].malloc(100)).start()
        cycle = [blocks]; cycle.append(cycle)
        print("ok")
    """)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


def test_main_prints_build_info_and_demo() -> None:
    result = _run("-m", "pymimalloc")
    assert result.returncode == 0, result.stderr
    assert "mimalloc_version  3.4.3" in result.stdout
    assert "closed     with one live block" in result.stdout
    assert result.stderr == ""


def test_main_json() -> None:
    import json

    import pymimalloc

    result = _run("-m", "pymimalloc", "--json")
    assert json.loads(result.stdout) == pymimalloc.build_info()


def test_importing_the_source_folder_without_the_compiled_module_says_why() -> None:
    import pathlib

    repo = pathlib.Path(__file__).resolve().parent.parent
    if list((repo / "pymimalloc").glob("_mimalloc*.so")):
        # an in-place (editable) build: the source folder is importable and must work
        result = subprocess.run([sys.executable, "-c", "import pymimalloc"], capture_output=True, text=True, cwd=repo)
        assert result.returncode == 0, result.stderr
    else:
        result = subprocess.run([sys.executable, "-c", "import pymimalloc"], capture_output=True, text=True, cwd=repo)
        assert "imported the source folder of a checkout" in result.stderr
