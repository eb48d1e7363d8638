from __future__ import annotations

import gc

import pytest

import pymimalloc
from pymimalloc import _core
from pymimalloc._core import lib


def test_allocators_return_blocks_of_the_requested_size(heap: pymimalloc.Heap) -> None:
    blocks = [heap.malloc(10), heap.zalloc(20), heap.calloc(3, 10), heap.malloc_aligned(40, 64),
              heap.zalloc_aligned(50, 4096)]
    assert [b.size for b in blocks] == [10, 20, 30, 40, 50]
    assert all(b.heap is heap and b in heap for b in blocks)
    assert (heap.live_blocks, heap.live_bytes) == (5, 150)


@pytest.mark.parametrize("size", [1, 100, 5000, 1 << 20, 3 << 20])
def test_zeroed_allocations_are_zero(heap: pymimalloc.Heap, size: int) -> None:
    # dirty some memory first, so reuse would show if zeroing were skipped
    for _ in range(3):
        with heap.malloc(size) as dirty:
            dirty.view[:] = b"\xff" * size
    for block in (heap.zalloc(size), heap.calloc(size, 1), heap.zalloc_aligned(size, 256)):
        assert block.view.tobytes() == bytes(size)


@pytest.mark.parametrize("alignment", [1, 2, 8, 16, 64, 4096, 65536, 1 << 22])
def test_aligned_allocations_are_aligned(heap: pymimalloc.Heap, alignment: int) -> None:
    for size in (1, 24, 1000):
        assert heap.malloc_aligned(size, alignment).address % alignment == 0
        assert heap.zalloc_aligned(size, alignment).address % alignment == 0


@pytest.mark.parametrize("old, new", [(16, 8), (16, 4096), (1000, 1 << 21), (1 << 21, 100)])
def test_realloc_keeps_contents_and_invalidates_the_old_block(heap: pymimalloc.Heap, old: int, new: int) -> None:
    block = heap.malloc(old)
    pattern = bytes(i % 251 for i in range(old))
    block.view[:] = pattern
    grown = heap.realloc(block, new)
    assert grown.size == new and grown.heap is heap
    keep = min(old, new)
    assert grown.view[:keep].tobytes() == pattern[:keep]
    assert block.freed
    with pytest.raises(ValueError):
        block.view
    assert (heap.live_blocks, heap.live_bytes) == (1, new)


def test_realloc_refuses_while_views_are_exported(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(16)
    view = block.view
    with pytest.raises(BufferError):
        heap.realloc(block, 1 << 20)
    assert not block.freed
    view.release()
    assert heap.realloc(block, 1 << 20).size == 1 << 20


def test_realloc_of_a_block_from_another_heap_raises(heap: pymimalloc.Heap) -> None:
    with pymimalloc.Heap() as other:
        foreign = other.malloc(16)
        with pytest.raises(ValueError, match="another heap"):
            heap.realloc(foreign, 32)
        assert not foreign.freed
        foreign.free()
    with pytest.raises(TypeError):
        heap.realloc(b"bytes", 8)  # type: ignore[arg-type]


def test_contains_accepts_blocks_addresses_and_buffers(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(64)
    assert block in heap and heap.contains(block.address) and heap.contains(block.address + 10)
    with block.view as view:
        assert view in heap
    with pymimalloc.Heap() as other:
        assert block not in other
    assert bytearray(64) not in heap
    for address in (0, 1, 12345, 2**63, 2**64 - 1, 2**64, -1, 2**100):
        assert not heap.contains(address)
    with pytest.raises(TypeError):
        heap.contains("not an address")  # type: ignore[arg-type]


def test_heap_of_names_no_closed_heap_even_if_its_close_was_interrupted() -> None:
    """Heap.close() closes in C, then leaves the registry heap_of reads: a KeyboardInterrupt between the two left
    heap_of naming the closed heap (a review's reproducer raised it there through sys.settrace). The C close alone
    stands for that interrupted close here."""
    heap = pymimalloc.Heap()
    kept = heap.malloc(64)
    assert pymimalloc.heap_of(kept) is heap
    _core.check(_core.heap_close(heap, _core.CLOSE_AUTO), "close")
    assert heap.closed
    assert pymimalloc.heap_of(kept) is None
    kept.free()
    heap.close()


def test_heap_of_finds_the_heap(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    assert pymimalloc.heap_of(block) is heap
    assert pymimalloc.heap_of(block.address) is heap
    assert pymimalloc.heap_of(bytearray(8)) is None
    for address in (0, 1, -1, 2**64, 0xDEADBEEF):
        assert pymimalloc.heap_of(address) is None


def test_glibc_memory_is_never_mimalloc_memory() -> None:
    # the process's malloc is not replaced: what libc hands out is unknown to mimalloc
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    address = libc.malloc(64)
    try:
        assert pymimalloc.heap_of(address) is None
        with pytest.raises(ValueError):
            pymimalloc.usable_size(address)
    finally:
        libc.free(address)


def test_close_without_live_blocks_destroys(heap: pymimalloc.Heap) -> None:
    blocks = [heap.malloc(100) for _ in range(100)]
    address = blocks[0].address
    del blocks
    assert lib.pmi_heap_of(address) != 0
    heap.close()
    assert heap.closed
    assert lib.pmi_heap_of(address) == 0  # mimalloc no longer knows the page: released at once
    heap.close()  # idempotent


def test_close_with_live_blocks_keeps_them_valid(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(64)
    block.view[:4] = b"kept"
    heap.close()
    assert heap.closed and not block.freed
    assert block.view[:4].tobytes() == b"kept"
    assert pymimalloc.heap_of(block) is None  # it belongs to no open heap
    assert (heap.live_blocks, heap.live_bytes) == (1, 64)
    assert not lib.pmi_heap_released(_core.handle(heap))  # the mimalloc heap lives while the block does
    block.free()
    assert (heap.live_blocks, heap.live_bytes) == (0, 0)
    assert lib.pmi_heap_released(_core.handle(heap))  # the last free released all its memory


def test_arrays_over_views_survive_close() -> None:
    heap = pymimalloc.Heap()
    view = heap.malloc(8).view  # the Block object itself is dropped at once
    view[:] = b"12345678"
    heap.close()
    assert bytes(view) == b"12345678"
    assert heap.live_blocks == 1
    del view
    assert heap.live_blocks == 0


def test_destroy_is_strict(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    with pytest.raises(BufferError):
        heap.destroy()
    assert not heap.closed
    block.free()
    heap.destroy()
    assert heap.closed
    with pytest.raises(ValueError):
        heap.destroy()


def test_destroy_refuses_while_only_a_view_is_alive(heap: pymimalloc.Heap) -> None:
    view = heap.malloc(8).view
    with pytest.raises(BufferError):
        heap.destroy()
    del view
    heap.destroy()


def test_delete_closes_strictly_once_and_keeps_blocks_valid(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    heap.delete()
    assert heap.closed and not block.freed and pymimalloc.heap_of(block) is None
    with pytest.raises(ValueError):
        heap.delete()


@pytest.mark.parametrize("allocate", [
    lambda h: h.malloc(8), lambda h: h.zalloc(8), lambda h: h.calloc(1, 8),
    lambda h: h.malloc_aligned(8, 16), lambda h: h.zalloc_aligned(8, 16),
])
def test_allocating_from_a_closed_heap_raises(allocate) -> None:
    heap = pymimalloc.Heap()
    heap.close()
    with pytest.raises(ValueError, match="closed"):
        allocate(heap)


def test_other_operations_on_a_closed_heap_raise() -> None:
    heap = pymimalloc.Heap()
    block = heap.malloc(8)
    heap.close()
    with pytest.raises(ValueError):
        heap.realloc(block, 16)
    assert not block.freed  # a refused realloc leaves the block alone
    with pytest.raises(ValueError):
        heap.collect()
    with pytest.raises(ValueError):
        block in heap
    with pytest.raises(ValueError):
        with heap:
            pass


def test_context_manager_closes(heap: pymimalloc.Heap) -> None:
    with pymimalloc.Heap() as inner:
        assert not inner.closed
    assert inner.closed


def test_garbage_collected_heap_is_closed() -> None:
    heap = pymimalloc.Heap()
    address = heap.malloc(8).address  # the block is already gone again
    assert lib.pmi_heap_of(address) != 0
    del heap
    gc.collect()
    assert lib.pmi_heap_of(address) == 0


def test_collect(heap: pymimalloc.Heap) -> None:
    blocks = [heap.malloc(1 << 16) for _ in range(20)]
    del blocks
    heap.collect()
    heap.collect(force=True)
    pymimalloc.collect()
    pymimalloc.collect(force=True)
    assert heap.live_blocks == 0


def test_repr_shows_state_and_counters() -> None:
    heap = pymimalloc.Heap()
    block = heap.malloc(10)
    assert repr(heap) == "<pymimalloc.Heap open live_blocks=1 live_bytes=10>"
    heap.close()
    assert repr(heap) == "<pymimalloc.Heap closed live_blocks=1 live_bytes=10>"
    block.free()
    assert repr(heap) == "<pymimalloc.Heap closed live_blocks=0 live_bytes=0>"


def test_main_heap() -> None:
    main = pymimalloc.main_heap()
    assert main is pymimalloc.main_heap() and main.is_main and not main.closed
    block = main.malloc(8)
    assert pymimalloc.heap_of(block) is main and block in main
    assert repr(main).startswith("<pymimalloc.Heap main ")
    for close in (main.close, main.destroy, main.delete):
        with pytest.raises(ValueError, match="main heap"):
            close()
    with main:  # leaving the with statement leaves the main heap alone
        pass
    assert not main.closed


def test_realloc_on_a_closed_heap_reports_the_heap_before_the_views() -> None:
    # regression (found by the state machine): a closed heap is the first thing realloc reports
    heap = pymimalloc.Heap()
    block = heap.malloc(0)
    view = block.view
    heap.close()
    with pytest.raises(ValueError, match="closed"):
        heap.realloc(block, 0)
    view.release()
    assert not block.freed
