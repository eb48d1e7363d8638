"""Python-level figures (pytest-benchmark): what a call from Python costs, reported apart from the C kernels.

    pip install '.[bench]' && pytest benchmarks/test_python_level.py --benchmark-group-by=group

These measure the FFI and the Python layer, not the allocator (an allocation is 3-10 ns, a call from
Python about 40 ns). Compare within a group; ratios between groups mean nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

import pymimalloc
from pymimalloc._core import lib


@pytest.fixture(scope="module")
def heap():
    with pymimalloc.Heap() as h:
        yield h


@pytest.mark.benchmark(group="alloc+free 64 B from Python")
def test_block_malloc_free(benchmark, heap) -> None:
    benchmark(lambda: heap.malloc(64).free())


@pytest.mark.benchmark(group="alloc+free 64 B from Python")
def test_block_dropped(benchmark, heap) -> None:
    benchmark(lambda: heap.malloc(64))  # freed by refcounting when the Block goes


@pytest.mark.benchmark(group="alloc+free 64 B from Python")
def test_bare_cffi_pair(benchmark) -> None:
    main = lib.mi_heap_main()
    malloc, free = lib.mi_heap_malloc, lib.mi_free
    benchmark(lambda: free(malloc(main, 64)))


@pytest.mark.benchmark(group="alloc+free 64 B from Python")
def test_bytearray(benchmark) -> None:
    benchmark(lambda: bytearray(64))


@pytest.mark.benchmark(group="visit")
@pytest.mark.parametrize("count", [10_000, 100_000])
def test_visitor_throughput(benchmark, count: int) -> None:
    with pymimalloc.Heap() as heap:
        blocks = [heap.malloc(48) for _ in range(count)]
        seen = benchmark(lambda: sum(1 for _ in heap.blocks()))
        assert seen == count
        benchmark.extra_info["blocks_per_second"] = count / benchmark.stats.stats.median
        del blocks


@pytest.mark.benchmark(group="numpy empty 4 KiB")
def test_np_empty_default(benchmark) -> None:
    benchmark(lambda: np.empty(512))


@pytest.mark.benchmark(group="numpy empty 4 KiB")
def test_np_empty_in_allocator(benchmark, heap) -> None:
    with heap.numpy_allocator():
        benchmark(lambda: np.empty(512))


@pytest.mark.benchmark(group="numpy empty 4 KiB")
def test_heap_empty(benchmark, heap) -> None:
    benchmark(lambda: heap.empty(512))
