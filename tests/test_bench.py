"""The benchmark kernels and the `python -m pymimalloc bench` command (correctness, not speed)."""
from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys

import pytest

import pymimalloc
from childproc import only_mimalloc_reports, run, run_program
from pymimalloc import _core
from pymimalloc._core import ffi, lib
from pymimalloc.bench import ALLOCATORS, PATTERNS, Measurement, Suite, plan, run_suite
from pymimalloc.bench.report import write_table



@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("allocator", list(ALLOCATORS))
def test_every_kernel_runs_on_every_allocator(pattern: str, allocator: str) -> None:
    case = plan([pattern], [64], quick=True)[0]
    code = PATTERNS[pattern].code
    with pymimalloc.Heap() as heap:
        if allocator == "heap":
            ns = lib.pmi_bench_run_in(code, _core.handle(heap), 64, case.param, 3000, 1)
        elif allocator == "pymimalloc":
            ns = lib.pmi_bench_run_glue(code, lib.PMI_BENCH_GLUE, _core.handle(heap), 64, case.param, 3000, 1)
        else:
            ns = lib.pmi_bench_run(code, ALLOCATORS[allocator], ffi.NULL, 64, case.param, 3000, 1)
        assert heap.live_blocks == 0  # the kernels free what they allocate
    assert ns > 0


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_every_kernel_runs_through_the_glue_of_python_objects(pattern: str) -> None:
    case = plan([pattern], [64], quick=True)[0]
    with pymimalloc.Heap() as heap:
        ns = _core.bench_run(PATTERNS[pattern].code, "objects", heap, 64, case.param, 3000, 1, pattern)
        assert heap.live_blocks == 0 and heap.live_bytes == 0  # counted in and out by the same sizes
        assert heap.stats().allocations > 0  # through the glue, which counts
    assert ns > 0


def test_bad_kernel_arguments_are_refused() -> None:
    assert lib.pmi_bench_run(99, lib.PMI_BENCH_GLIBC, ffi.NULL, 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_PAIR, 7, ffi.NULL, 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_PAIR, lib.PMI_BENCH_HEAP, ffi.NULL, 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_LARSON, lib.PMI_BENCH_GLIBC, ffi.NULL, 64, 99, 10, 1) < 0
    heap = pymimalloc.Heap()
    heap.close()
    assert lib.pmi_bench_run_in(lib.PMI_PATTERN_PAIR, _core.handle(heap), 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run_glue(lib.PMI_PATTERN_PAIR, lib.PMI_BENCH_GLUE, _core.handle(heap), 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_PAIR, lib.PMI_BENCH_GLUE, ffi.NULL, 64, 0, 10, 1) < 0
    assert lib.pmi_bench_run(lib.PMI_PATTERN_PAIR, lib.PMI_BENCH_OBJECTS, ffi.NULL, 64, 0, 10, 1) < 0
    with pymimalloc.Heap() as heap:  # the glue's runner runs the glues only
        assert lib.pmi_bench_run_glue(lib.PMI_PATTERN_PAIR, lib.PMI_BENCH_HEAP, _core.handle(heap), 64, 0, 10, 1) \
            == lib.PMI_BENCH_EINVAL


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
    return run(["-m", "pymimalloc", "bench", *args], timeout=300)


def test_bench_command_prints_a_table_and_writes_json(tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = _bench("--quick", "--pattern", "pair", "--pattern", "ring", "--size", "64", "--repeat", "2",
                    "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "| pair 64 B" in result.stdout and "| heap" in result.stdout and "| glibc" in result.stdout
    assert "wrote " + str(out) in result.stdout
    assert "[1/2]" in result.stderr  # progress
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    assert data["build_info"] == pymimalloc.build_info()
    assert data["machine"]["python"] == sys.version.split()[0]
    assert {r["allocator"] for r in data["results"]} == set(ALLOCATORS)
    assert all(len(r["samples"]) == 2 for r in data["results"])


def _suite_of_every_case(ns: float) -> Suite:
    """Every case of the full plan, every allocator, all at ``ns`` (wide numbers make wide columns)."""
    measurements = [Measurement(case, allocator, ns * (i + 1), ns, ns * 9, (ns,))
                    for case in plan() for i, allocator in enumerate(ALLOCATORS)]
    return Suite(measurements, repeat=5, quick=False)


@pytest.mark.parametrize("ratios", [False, True])
def test_the_report_fits_100_columns_with_a_legend_and_one_summary_line(ratios: bool) -> None:
    out = io.StringIO()
    write_table(_suite_of_every_case(123_456.7), out, ratios=ratios)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert all(f"| {a}" in lines[1] for a in ALLOCATORS)  # one column per allocator
    for allocator in ("heap", "pymimalloc", "mimalloc"):
        assert any(line.startswith(f"  {allocator}  ") for line in lines), allocator  # the legend explains it
    assert [line for line in lines if line.startswith("summary:")] == [lines[-1]]
    assert lines[-2:] == ["time xR: the geometric mean over the cases of the Heap's time / the other's (below 1: faster)",
                          "summary: a Heap was faster than pymalloc in 94 of 94 cases (time x0.25), glibc in 94 of 94 (x0.20)"]
    assert "JSON" not in out.getvalue() and "json" not in out.getvalue()
    assert ("time / pymalloc's time" in out.getvalue()) == ratios
    assert ("| 0.25 |" in out.getvalue()) == ratios  # heap / pymalloc


def test_bench_ratios_are_behind_a_flag() -> None:
    plain = _bench("--quick", "--pattern", "pair", "--size", "64", "--repeat", "1")
    ratios = _bench("--quick", "--pattern", "pair", "--size", "64", "--repeat", "1", "--ratios")
    assert plain.returncode == ratios.returncode == 0, plain.stderr + ratios.stderr
    assert "time / pymalloc's time" not in plain.stdout and "time / pymalloc's time" in ratios.stdout
    assert "json" not in plain.stdout.lower()
    assert max(len(line) for line in plain.stdout.splitlines() + ratios.stdout.splitlines()) <= 100


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
    for args in (["--pattern", "nope"], ["--size", "lots"], ["--repeat", "0"], ["--size", "9" * 20],
                 ["--size", "65m"]):  # a huge size ended in an OverflowError or MemoryError traceback (review)
        result = _bench(*args)
        assert result.returncode == 2 and "error: " in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "pymimalloc", *args], timeout=300)


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


@pytest.mark.c_library_memory  # a memory checker's malloc keeps freed blocks (ASan's quarantine)
def test_a_kernel_out_of_memory_frees_what_it_held() -> None:
    # ENOMEM is the point: a checked build prints mimalloc's warnings and errors about it (show_errors)
    result = run_program("bench_out_of_memory.py", timeout=120, check_mimalloc_errors=False,
                         stderr_ok=only_mimalloc_reports)
    assert result.stdout.strip() == "OK"
