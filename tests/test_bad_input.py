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


def _freed(heap: pymimalloc.Heap) -> pymimalloc.Block:
    block = heap.malloc(16)
    block.free()
    return block


def _closed() -> pymimalloc.Heap:
    heap = pymimalloc.Heap()
    heap.close()
    return heap


def _released_arena() -> pymimalloc.Arena:
    arena = pymimalloc.Arena(pymimalloc.Arena.min_size())
    arena.release()
    return arena


def _raise_in_visit(heap: pymimalloc.Heap) -> None:
    heap.malloc(8)
    heap.visit(lambda area, info: 1 / 0)


def _free_in_visit(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    heap.visit(lambda area, info: block.free())


def _visit_not_callable(heap: pymimalloc.Heap) -> None:
    heap.malloc(8)
    heap.visit(42)  # type: ignore[arg-type]


MORE_CASES: list[tuple[str, Callable[[pymimalloc.Heap], Any], type[BaseException]]] = [
    ("view of a freed block", lambda h: _freed(h).view, ValueError),
    ("address of a freed block", lambda h: _freed(h).address, ValueError),
    ("usable_size of a freed block", lambda h: pymimalloc.usable_size(_freed(h)), ValueError),
    ("realloc of a freed block", lambda h: h.realloc(_freed(h), 32), ValueError),
    ("contains of a freed block", lambda h: _freed(h) in h, ValueError),
    ("with a freed block", lambda h: _freed(h).__enter__(), ValueError),
    ("malloc from a closed heap", lambda h: _closed().malloc(8), ValueError),
    ("zeros from a closed heap", lambda h: _closed().zeros(8), ValueError),
    ("snapshot of a closed heap", lambda h: _closed().snapshot().__enter__(), ValueError),
    ("as_default of a closed heap", lambda h: _closed().as_default().__enter__(), ValueError),
    ("stats of a closed heap", lambda h: _closed().stats(), ValueError),
    ("destroy a closed heap", lambda h: _closed().destroy(), ValueError),
    ("realloc a block from a closed heap", lambda h: h.realloc(_closed_with_block(), 8), ValueError),
    ("heap in a released arena", lambda h: pymimalloc.Heap(arena=_released_arena()), ValueError),
    ("arena below its minimum", lambda h: pymimalloc.Arena(4096), ValueError),
    ("heap in a non-arena", lambda h: pymimalloc.Heap(arena=object()), TypeError),  # type: ignore[arg-type]
    ("unknown option", lambda h: pymimalloc.options["no_such_option"], KeyError),
    ("option value str", lambda h: pymimalloc.options.__setitem__("verbose", "1"), TypeError),
    ("option value float", lambda h: pymimalloc.options.__setitem__("verbose", 1.0), TypeError),
    ("option value huge", lambda h: pymimalloc.options.__setitem__("verbose", 2**64), ValueError),
    ("override of an unknown option", lambda h: pymimalloc.options.override(nope=1).__enter__(), KeyError),
    ("unknown preset", lambda h: pymimalloc.options.preset("fastest"), KeyError),
    ("a callback that raises", _raise_in_visit, ZeroDivisionError),
    ("a callback that frees", _free_in_visit, RuntimeError),
    ("a callback that is not callable", _visit_not_callable, TypeError),
    ("main heap close", lambda h: pymimalloc.main_heap().close(), ValueError),
    ("numpy int alignment 3", lambda h: h.malloc_aligned(8, np.int64(3)), ValueError),
    ("numpy float size", lambda h: h.zalloc(np.float32(8)), TypeError),
    ("heap_of a str", lambda h: pymimalloc.heap_of("0x1000"), TypeError),
]


def _closed_with_block() -> pymimalloc.Block:
    heap = pymimalloc.Heap()
    block = heap.malloc(8)
    heap.close()
    _keep.append(block)
    return block


_keep: list[object] = []


@pytest.mark.parametrize("name, call, exception", [pytest.param(*case, id=case[0]) for case in MORE_CASES])
def test_more_bad_inputs_raise_and_the_process_stays_healthy(name: str, call, exception) -> None:
    with pymimalloc.Heap() as heap:
        with pytest.raises(exception):
            call(heap)
        assert not heap.closed
        block = heap.malloc(64)
        block.view[:] = bytes(range(64))
        assert bytes(block.view) == bytes(range(64)) and heap_consistent(heap)
        block.free()
    _keep.clear()


def heap_consistent(heap: pymimalloc.Heap) -> bool:
    """The walk (not frozen, not corrupt) agrees with the heap's counters."""
    return len(list(heap.blocks())) == heap.live_blocks


def test_there_are_at_least_forty_bad_inputs() -> None:
    assert len(CASES) + len(MORE_CASES) >= 40


def test_an_address_from_array_interface_is_checked_as_an_int_is(heap: pymimalloc.Heap) -> None:
    """Any object may say where its data is (``__array_interface__``): a forged address outside 0..2**64-1 gets the
    answers that int gets (a review's raised OverflowError)."""

    class SaysItsDataIsAt:
        def __init__(self, address: int) -> None:
            self.__array_interface__ = {"data": (address, False), "shape": (1,), "typestr": "|u1", "version": 3}

    for address in (-1, -2**70, 2**64, 2**70, 0, 2**64 - 1):
        forged = SaysItsDataIsAt(address)
        assert pymimalloc.heap_of(forged) is pymimalloc.heap_of(address)
        for asked in (forged, address):
            with pytest.raises(ValueError, match="not an address of a block"):
                pymimalloc.usable_size(asked)
        assert heap.contains(forged) is heap.contains(address) is False
