"""The benchmark patterns come from one C table, and each status a kernel returns has one meaning."""
from __future__ import annotations

import pytest

import pymimalloc
from pymimalloc import _core
from pymimalloc._core import ffi, lib
from pymimalloc.bench import PATTERNS


def test_python_reads_the_patterns_from_the_c_table() -> None:
    assert list(PATTERNS) == list(_core.BENCH_PATTERNS) and len(PATTERNS) == lib.PMI_PATTERN_COUNT
    assert [p.code for p in PATTERNS.values()] == list(range(lib.PMI_PATTERN_COUNT))
    assert PATTERNS["pair"].code == lib.PMI_PATTERN_PAIR and PATTERNS["larson"].code == lib.PMI_PATTERN_LARSON
    assert PATTERNS["xthread"].op == "block, made in one thread and freed in another (a queue between them)"
    assert lib.pmi_bench_pattern(-1) == ffi.NULL and lib.pmi_bench_pattern(lib.PMI_PATTERN_COUNT) == ffi.NULL


def test_each_status_has_one_meaning() -> None:
    statuses = [lib.PMI_BENCH_ENOMEM, lib.PMI_BENCH_EINVAL, lib.PMI_BENCH_ECLOSED, lib.PMI_BENCH_EFROZEN]
    assert len(set(statuses)) == 4 and all(s < 0 for s in statuses)
    glibc, pair, larson, batch = lib.PMI_BENCH_GLIBC, lib.PMI_PATTERN_PAIR, lib.PMI_PATTERN_LARSON, lib.PMI_PATTERN_BATCH
    # arguments out of range are refused as such, never reported as out of memory
    assert lib.pmi_bench_run(lib.PMI_PATTERN_COUNT, glibc, ffi.NULL, 64, 0, 10, 1) == lib.PMI_BENCH_EINVAL
    assert lib.pmi_bench_run(larson, glibc, ffi.NULL, 64, 99, 10, 1) == lib.PMI_BENCH_EINVAL
    assert lib.pmi_bench_run(batch, glibc, ffi.NULL, 64, 0, 10, 1) == lib.PMI_BENCH_EINVAL
    assert lib.pmi_bench_run(pair, glibc, ffi.NULL, 64, 0, 0, 1) == lib.PMI_BENCH_EINVAL
    with pymimalloc.Heap() as heap, heap.snapshot():
        assert lib.pmi_bench_run_in(pair, _core.handle(heap), 64, 0, 10, 1) == lib.PMI_BENCH_EFROZEN
        assert lib.pmi_bench_run_glue(pair, lib.PMI_BENCH_GLUE, _core.handle(heap), 64, 0, 10, 1) == lib.PMI_BENCH_EFROZEN
    assert lib.pmi_bench_run_in(pair, _core.handle(heap), 64, 0, 10, 1) == lib.PMI_BENCH_ECLOSED
    assert lib.pmi_bench_run_glue(pair, lib.PMI_BENCH_GLUE, _core.handle(heap), 64, 0, 10, 1) == lib.PMI_BENCH_ECLOSED


def test_statuses_raise_what_they_mean() -> None:
    pair = lib.PMI_PATTERN_PAIR
    with pymimalloc.Heap() as heap:
        with heap.snapshot(), pytest.raises(RuntimeError, match="^run: the heap is frozen"):
            _core.bench_run(pair, "heap", heap, 64, 0, 10, 1, "run")
        with pytest.raises(ValueError, match="^run: the kernel refused its arguments"):
            _core.bench_run(lib.PMI_PATTERN_BATCH, "glibc", heap, 64, 0, 10, 1, "run")
        assert _core.bench_run(pair, "pymimalloc", heap, 64, 0, 10, 1, "run") > 0
    for allocator in ("heap", "pymimalloc"):
        with pytest.raises(ValueError, match="^run: the heap is closed"):
            _core.bench_run(pair, allocator, heap, 64, 0, 10, 1, "run")
