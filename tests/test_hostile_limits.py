"""Sizes and arenas at their limits: usable_size inside a block, a full arena, a huge arena, good_size near
2**63, a huge alignment; and tracemalloc counting each allocation once."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

import pymimalloc
from childproc import only_mimalloc_reports, run_program


@pytest.mark.exact_block_sizes
def test_usable_size_of_an_interior_address_counts_from_there() -> None:
    run_program("limits_interior_usable_size.py")


def test_second_heap_in_a_full_arena_raises_memory_error_or_succeeds() -> None:
    run_program(
        "limits_full_arena.py",
        stderr_ok=only_mimalloc_reports,
        check_mimalloc_errors=False,  # out of memory is reported on purpose
    )


def test_huge_arena_is_refused_or_big_enough() -> None:
    # above mimalloc's largest arena: refused before anything is reserved; below: at least the size asked
    run_program(
        "limits_huge_arena.py",
        stderr_ok=only_mimalloc_reports,
        check_mimalloc_errors=False,  # a refused reservation is an out-of-memory report
    )


def test_good_size_stays_within_limits() -> None:
    run_program("limits_good_size.py")


def test_huge_power_of_two_alignment_is_not_called_a_non_power_of_two(heap: pymimalloc.Heap) -> None:
    with pytest.raises(ValueError) as raised:
        heap.malloc_aligned(8, 2**63)
    assert "power of two" not in str(raised.value), str(raised.value)


def _traced_in_pymimalloc_domain() -> int:
    snapshot = tracemalloc.take_snapshot()
    mine = snapshot.filter_traces([tracemalloc.DomainFilter(True, pymimalloc.TRACEMALLOC_DOMAIN)])
    return sum(trace.size for trace in mine.traces)


def test_tracemalloc_counts_heap_array_data_once(heap: pymimalloc.Heap) -> None:
    np = pytest.importorskip("numpy")
    heap.empty(16, dtype=np.uint8)  # numpy's C API and the heap's handler are set up before tracing
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        array = heap.empty(10_000_000, dtype=np.uint8)
        added = tracemalloc.get_traced_memory()[0] - before
        assert 9_500_000 <= added <= 11_000_000, added
        del array
    finally:
        tracemalloc.stop()


def test_tracemalloc_reports_a_block_in_the_pymimalloc_domain(heap: pymimalloc.Heap) -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before = _traced_in_pymimalloc_domain()
        block = heap.malloc(1 << 20)
        added = _traced_in_pymimalloc_domain() - before
        assert 0.95 * (1 << 20) <= added <= 1.1 * (1 << 20), added
        block.free()
    finally:
        tracemalloc.stop()
