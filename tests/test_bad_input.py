"""Every bad input gets its documented exception, and the heap stays usable afterwards."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import pymimalloc

MAX = 2**63 - 1

CASES: list[tuple[str, Callable[[pymimalloc.Heap], Any], type[BaseException]]] = [
    ("negative size", lambda h: h.malloc(-1), ValueError),
    ("negative zalloc", lambda h: h.zalloc(-8), ValueError),
    ("negative calloc count", lambda h: h.calloc(-1, 8), ValueError),
    ("negative calloc size", lambda h: h.calloc(8, -1), ValueError),
    ("size over PTRDIFF_MAX", lambda h: h.malloc(MAX + 1), MemoryError),
    ("size 2**64", lambda h: h.malloc(2**64), MemoryError),
    ("size 2**200", lambda h: h.zalloc(2**200), MemoryError),
    ("calloc overflow", lambda h: h.calloc(2**32, 2**32), MemoryError),
    ("out of memory", lambda h: h.malloc(MAX), MemoryError),
    ("out of memory aligned", lambda h: h.malloc_aligned(2**62, 64), MemoryError),
    ("float size", lambda h: h.malloc(8.0), TypeError),
    ("str size", lambda h: h.malloc("8"), TypeError),
    ("None size", lambda h: h.malloc(None), TypeError),
    ("bool size", lambda h: h.malloc(True), TypeError),
    ("float count", lambda h: h.calloc(1.5, 8), TypeError),
    ("alignment 0", lambda h: h.malloc_aligned(8, 0), ValueError),
    ("alignment 3", lambda h: h.malloc_aligned(8, 3), ValueError),
    ("alignment -8", lambda h: h.zalloc_aligned(8, -8), ValueError),
    ("alignment 2**64", lambda h: h.malloc_aligned(8, 2**64), ValueError),
    ("alignment float", lambda h: h.malloc_aligned(8, 8.0), TypeError),
    ("realloc negative", lambda h: h.realloc(h.malloc(8), -1), ValueError),
    ("realloc huge", lambda h: h.realloc(h.malloc(8), MAX + 1), MemoryError),
    ("realloc non-block", lambda h: h.realloc(bytearray(8), 8), TypeError),
    ("contains str", lambda h: h.contains("x"), TypeError),
    ("contains None", lambda h: None in h, TypeError),
    ("good_size negative", lambda h: pymimalloc.good_size(-1), ValueError),
    ("good_size float", lambda h: pymimalloc.good_size(1.0), TypeError),
    ("usable_size of address 0", lambda h: pymimalloc.usable_size(0), ValueError),
    ("usable_size of address -1", lambda h: pymimalloc.usable_size(-1), ValueError),
    ("usable_size of 2**64", lambda h: pymimalloc.usable_size(2**64), ValueError),
]


OUT_OF_MEMORY = {"out of memory", "out of memory aligned"}  # mimalloc reports these (ENOMEM), as it should


@pytest.mark.parametrize("name, call, exception", [
    pytest.param(*case, id=case[0], marks=[pytest.mark.mimalloc_errors] if case[0] in OUT_OF_MEMORY else [])
    for case in CASES
])
def test_bad_input_raises_and_heap_stays_healthy(name: str, call, exception) -> None:
    with pymimalloc.Heap() as heap:
        with pytest.raises(exception):
            call(heap)
        block = heap.malloc(32)
        block.view[:] = bytes(32)
        assert block in heap
        block.free()
        assert heap.live_blocks == 0


@pytest.mark.parametrize("address", [0, 1, -1, 7, 2**64 - 1, 2**64, 2**64 + 8, 0x7FFF_FFFF_FFF0])
def test_foreign_addresses_are_false_or_none(address: int) -> None:
    with pymimalloc.Heap() as heap:
        assert address not in heap
        assert pymimalloc.heap_of(address) is None


def test_freed_address_is_not_a_live_block() -> None:
    with pymimalloc.Heap() as heap:
        block = heap.malloc(1 << 22)  # a huge block gets its own page: freeing returns it
        address = block.address
        block.free()
        heap.collect(force=True)
        assert pymimalloc.heap_of(address) is None


def test_numpy_integers_are_accepted_as_sizes() -> None:
    with pymimalloc.Heap() as heap:
        assert heap.malloc(np.int64(16)).size == 16
        assert heap.calloc(np.uint8(2), np.int32(8)).size == 16
        assert heap.malloc_aligned(8, np.int64(64)).address % 64 == 0
        with pytest.raises(ValueError):
            heap.malloc(np.int64(-1))
        with pytest.raises(TypeError):
            heap.malloc(np.float64(8))
