"""The scripts in benchmarks/ still run against the package as it is (correctness, not speed).

They call private functions of ``pymimalloc._core`` from code in strings that no type checker sees, so a changed
signature showed only when someone next ran the script (glue_pair.py called ``bench_run`` without its ``what``).
Every script must at least parse its arguments, and the cheap ones run a tiny case end to end."""

from __future__ import annotations

import pathlib
import sys

import pytest

from builds import memory_checker_build
from childproc import run

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
# test_*.py there are pytest-benchmark files (the `bench` extra), not scripts
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("test_"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_parses_its_arguments(script: str) -> None:
    result = run([str(BENCHMARKS / script), "--help"], timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower(), result.stdout


@pytest.mark.skipif(memory_checker_build(), reason="memory-checker build: the script's clean environment drops the "
                    "checker's runtime (LD_PRELOAD) that the compiled module needs")
def test_rss_worker_parts_runs_a_tiny_case() -> None:
    """Under install() it reads the compiled module the start-up path loaded and collects through it."""
    result = run([str(BENCHMARKS / "rss_worker_parts.py"), "--python", sys.executable, "--modes", "pymalloc,pymimalloc",
                  "--runs", "1", "--imports", "json"], timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:5] for line in result.stdout.splitlines()[2:]}
    assert float(rows["module + cffi files"][1]) > 0.1, result.stdout  # pymimalloc's libraries are loaded
    # a forced collect gives memory back; it may not take any (a few pages of noise aside)
    assert float(rows["anonymous after a forced collect"][1]) <= float(rows["anonymous"][1]) + 0.1, result.stdout


def test_glue_pair_runs_a_tiny_case() -> None:
    result = run([str(BENCHMARKS / "glue_pair.py"), "--rounds", "1", "--ops", "4000"], timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| this tree |")]
    assert [row.split("|")[2].strip() for row in rows] == ["pair 64 B", "larson threads=1", "larson threads=2"]
    for row in rows:
        heap_ns, glue_ns, ratio = (float(cell) for cell in row.split("|")[3:6])
        assert heap_ns > 0 and glue_ns > 0 and ratio > 0, row
