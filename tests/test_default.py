from __future__ import annotations


import pytest

import pymimalloc
from pymimalloc._core import lib
from threads import run_threads


def _raw_malloc_lands_in(heap: pymimalloc.Heap) -> bool:
    """Whether mimalloc's own mi_malloc in this thread allocates from ``heap``."""
    pointer = lib.mi_malloc(32)
    try:
        return pymimalloc.heap_of(int(pymimalloc._core.ffi.cast("uintptr_t", pointer))) is heap
    finally:
        lib.mi_free(pointer)


def test_as_default_switches_the_thread_default_and_restores_it(heap: pymimalloc.Heap) -> None:
    main = pymimalloc.main_heap()
    assert pymimalloc.default_heap() is main and _raw_malloc_lands_in(main)
    with heap.as_default() as same:
        assert same is heap and pymimalloc.default_heap() is heap
        assert _raw_malloc_lands_in(main)  # mimalloc's own thread default is never changed
        block = pymimalloc.malloc(16)
        assert block.heap is heap and block in heap
        with pymimalloc.Heap() as inner:
            with inner.as_default():  # nesting
                assert pymimalloc.malloc(8).heap is inner
            assert pymimalloc.default_heap() is heap
    assert pymimalloc.default_heap() is main and _raw_malloc_lands_in(main)
    assert pymimalloc.malloc(8).heap is main


def test_other_threads_are_unaffected(heap: pymimalloc.Heap) -> None:
    seen: list[object] = []

    def other() -> None:
        seen.append(pymimalloc.default_heap())
        seen.append(_raw_malloc_lands_in(pymimalloc.main_heap()))

    with heap.as_default():
        run_threads(other)
    assert seen == [pymimalloc.main_heap(), True]


def test_a_default_heap_cannot_be_closed_and_errors_restore(heap: pymimalloc.Heap) -> None:
    with pytest.raises(KeyError):
        with heap.as_default():
            for close in (heap.close, heap.destroy, heap.delete):
                with pytest.raises(RuntimeError, match="default"):
                    close()
            raise KeyError("inside")
    assert pymimalloc.default_heap() is pymimalloc.main_heap()
    assert _raw_malloc_lands_in(pymimalloc.main_heap())
    heap.close()
    assert heap.closed
    with pytest.raises(ValueError):
        with heap.as_default():
            pass


def test_as_default_of_a_frozen_heap_raises(heap: pymimalloc.Heap) -> None:
    with heap.snapshot():
        with pytest.raises(RuntimeError):
            with heap.as_default():
                pass
