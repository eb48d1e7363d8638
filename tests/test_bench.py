"""The benchmark kernels and the `python -m pymimalloc bench` command (correctness, not speed)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile

import pytest

import pymimalloc
from pymimalloc import _core
from pymimalloc._core import ffi, lib
from pymimalloc.bench import ALLOCATORS, PATTERNS, plan, run_suite

CWD = tempfile.gettempdir()


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("allocator", list(ALLOCATORS))
def test_every_kernel_runs_on_every_allocator(pattern: str, allocator: str) -> None:
    case = plan([pattern], [64], quick=True)[0]
    code = PATTERNS[pattern].code
    with pymimalloc.Heap() as heap:
        if allocator == "heap":
            ns = lib.pmi_bench_run_in(code, _core.handle(heap), 64, case.param, 3000, 1)
        elif allocator == "pymimalloc":
            ns = lib.pmi_bench_run_glue(code, _core.handle(heap), 64, case.param, 3000, 1)
        else:
            ns = lib.pmi_bench_run(code, ALLOCATORS[allocator], ffi.NULL, 64, case.param, 3000, 1)
        assert heap.live_blocks == 0  # the kernels free what they allocate
    assert ns > 0


def test_bad_kernel_arguments_are_refused() -> None:
    assert lib.pmi_bench_run(99, lib.PMI_BENCH_GLIBC, ffi.NULL, 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_PAIR, 7, ffi.NULL, 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_PAIR, lib.PMI_BENCH_HEAP, ffi.NULL, 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_LARSON, lib.PMI_BENCH_GLIBC, ffi.NULL, 64, 99, 10, 1) < 0
    heap = pymimalloc.Heap()
    heap.close()
    assert lib.pmi_bench_run_in(lib.PMI_PATTERN_PAIR, _core.handle(heap), 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run_glue(lib.PMI_PATTERN_PAIR, _core.handle(heap), 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_PAIR, lib.PMI_BENCH_GLUE, ffi.NULL, 64, 0, 10, 1) < 0


def test_plan_filters_and_rejects_unknown_patterns() -> None:
    cases = plan(["ring", "workset"], [16, 4096])
    assert [(c.pattern, c.size) for c in cases] == [("ring", 16), ("ring", 4096), ("workset", 0)]
    with pytest.raises(KeyError):
        plan(["nope"])
    assert len(plan(quick=True)) < len(plan())


def test_suite_measures_every_allocator_with_repeats() -> None:
    suite = run_suite(plan(["pair"], [64]), repeat=3, quick=True)
    assert {m.allocator for m in suite.measurements} == set(ALLOCATORS)
    for m in suite.measurements:
        assert len(m.samples) == 3 and m.min_ns <= m.median_ns <= m.max_ns


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pymimalloc", "bench", *args], capture_output=True, text=True,
                          timeout=300, cwd=CWD)


def test_bench_command_prints_a_table_and_writes_json(tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = _bench("--quick", "--pattern", "pair", "--pattern", "ring", "--size", "64", "--repeat", "2",
                    "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "| pair 64 B" in result.stdout and "heap/pymalloc" in result.stdout and "mimalloc/glibc" in result.stdout
    assert "[1/2]" in result.stderr  # progress
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    assert data["build_info"] == pymimalloc.build_info()
    assert data["machine"]["python"] == sys.version.split()[0]
    assert {r["allocator"] for r in data["results"]} == set(ALLOCATORS)
    assert all(len(r["samples"]) == 2 for r in data["results"])


def test_bench_plot(tmp_path) -> None:
    png = tmp_path / "bench.png"
    result = _bench("--quick", "--pattern", "pair", "--size", "64", "--repeat", "1", "--plot", str(png))
    if importlib.util.find_spec("matplotlib") is None:
        assert result.returncode == 2 and "pip install 'pymimalloc[plot]'" in result.stderr
        assert not png.exists()
    else:
        assert result.returncode == 0, result.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_bad_arguments() -> None:
    for args in (["--pattern", "nope"], ["--size", "lots"], ["--repeat", "0"]):
        result = _bench(*args)
        assert result.returncode == 2 and result.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pymimalloc", *args], capture_output=True, text=True,
                          timeout=300, cwd=CWD)


def test_version_names_both_versions() -> None:
    result = _cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pymimalloc {pymimalloc.__version__} (mimalloc {pymimalloc.mimalloc_version})"


def test_help_shows_the_bench_subcommand_in_plain_text() -> None:
    top, bench = _cli("--help"), _bench("--help")
    assert top.returncode == bench.returncode == 0
    assert "python -m pymimalloc bench" in top.stdout.splitlines()[1]  # the usage line itself
    for text in (top.stdout, bench.stdout):
        assert "``" not in text  # no reST markup in terminal help
    assert "about 10 s" in bench.stdout


@pytest.mark.parametrize("option", ["--json", "--plot"])
@pytest.mark.parametrize("where", ["missing folder", "a folder"])
def test_unwritable_outputs_are_refused_before_the_run(tmp_path, option: str, where: str) -> None:
    target = tmp_path / "missing" / "out.x" if where == "missing folder" else tmp_path
    result = _bench("--pattern", "pair", "--size", "64", option, str(target))
    assert result.returncode == 2 and f"argument {option}" in result.stderr
    assert "[1/" not in result.stderr  # nothing was measured
