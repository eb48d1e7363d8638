from __future__ import annotations

import gc

import pytest

import pymimalloc


@pytest.mark.exact_block_sizes
def test_address_size_and_usable_size(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(100)
    assert block.size == 100
    assert block.usable_size >= 100
    assert block.usable_size == pymimalloc.usable_size(block) == pymimalloc.usable_size(block.address)
    assert block.address % 8 == 0
    assert block.heap is heap
    assert not block.freed


def test_view_is_writable_and_exactly_size_bytes(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(10)
    view = block.view
    assert (view.nbytes, view.format, view.readonly) == (10, "B", False)
    view[:] = bytes(range(10))
    assert bytes(block.view) == bytes(range(10))  # a second view sees the same memory
    view.release()


def test_zero_size_block(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(0)
    assert block.size == 0 and block.view.nbytes == 0
    assert pymimalloc.heap_of(block) is heap
    block.free()


def test_free_is_idempotent_and_counts(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(64)
    assert (heap.live_blocks, heap.live_bytes) == (1, 64)
    block.free()
    block.free()
    assert block.freed
    assert (heap.live_blocks, heap.live_bytes) == (0, 0)


@pytest.mark.parametrize("use", [
    lambda b: b.address, lambda b: b.size, lambda b: b.usable_size, lambda b: b.view,
    lambda b: b.__enter__(),
])
def test_using_a_freed_block_raises_value_error(heap: pymimalloc.Heap, use) -> None:
    block = heap.malloc(8)
    block.free()
    with pytest.raises(ValueError, match="freed"):
        use(block)
    assert repr(block) == "<pymimalloc.Block freed>"


def test_free_with_exported_view_raises_buffer_error(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(16)
    view = block.view
    with pytest.raises(BufferError):
        block.free()
    assert not block.freed
    view.release()
    block.free()
    assert block.freed and heap.live_blocks == 0


def test_derived_views_also_hold_the_block(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(16)
    view = block.view
    part = view[4:8]
    view.release()
    with pytest.raises(BufferError):
        block.free()
    del part
    block.free()


def test_view_keeps_memory_alive_after_the_block_is_dropped(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(32)
    view = block.view
    view[:4] = b"live"
    del block
    gc.collect()
    assert heap.live_blocks == 1  # the view still owns the memory
    assert bytes(view[:4]) == b"live"
    del view
    assert heap.live_blocks == 0  # freed as soon as the last view went


def test_block_frees_itself_when_collected(heap: pymimalloc.Heap) -> None:
    heap.malloc(1000)  # dropped at once
    assert heap.live_blocks == 0
    blocks = [heap.malloc(10) for _ in range(5)]
    cycle: list[object] = [blocks]
    cycle.append(cycle)
    del blocks, cycle
    gc.collect()
    assert heap.live_blocks == 0


def test_block_is_a_context_manager(heap: pymimalloc.Heap) -> None:
    with heap.malloc(8) as block:
        assert block.size == 8
    assert block.freed


def test_blocks_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError):
        pymimalloc.Block()


def test_repr_shows_size_and_address(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(24)
    assert repr(block) == f"<pymimalloc.Block 24 bytes at {block.address:#x}>"


@pytest.mark.exact_block_sizes
def test_good_size_rounds_up() -> None:
    assert pymimalloc.good_size(1) >= 1
    assert pymimalloc.good_size(1000) >= 1000
    if pymimalloc.build_info()["debug"] == 0 and pymimalloc.build_info()["secure"] == 0:
        # without padding a size class is its own good size
        assert pymimalloc.good_size(100) == pymimalloc.good_size(pymimalloc.good_size(100))


def test_usable_size_of_foreign_address_raises(heap: pymimalloc.Heap) -> None:
    import mmap

    with mmap.mmap(-1, 4096) as foreign, pytest.raises(ValueError):  # not Python's allocator: install() serves that
        pymimalloc.usable_size(foreign)
    with pytest.raises(ValueError):
        pymimalloc.usable_size(8)
    with pytest.raises(TypeError):
        pymimalloc.usable_size("text")


def test_a_block_is_a_buffer(heap: pymimalloc.Heap) -> None:
    import numpy as np

    block = heap.malloc(16)
    assert len(block) == 16 and block.exports == 0
    memoryview(block)[:] = bytes(range(16))
    assert bytes(block) == bytes(range(16))
    view = memoryview(block)
    assert view.format == "B" and not view.readonly and view.nbytes == 16 and block.exports == 1
    array = np.frombuffer(block, np.uint8)
    array[0] = 99
    assert block.view[0] == 99 and block.exports == 2
    with pytest.raises(BufferError):
        block.free()
    with pytest.raises(BufferError):
        heap.realloc(block, 64)
    view.release()
    del array
    assert block.exports == 0
    block.free()
    with pytest.raises(ValueError):
        memoryview(block)
    with pytest.raises(ValueError):
        len(block)


def test_an_exported_buffer_keeps_a_dropped_block_alive(heap: pymimalloc.Heap) -> None:
    view = heap.malloc(32).view
    view[:] = b"x" * 32
    assert heap.live_blocks == 1  # the view holds the Block
    assert bytes(view) == b"x" * 32
    view.release()
    assert heap.live_blocks == 0


def test_blocks_come_only_from_heaps() -> None:
    with pytest.raises(TypeError, match="Heap.malloc"):
        pymimalloc.Block()
    assert pymimalloc.Block.__module__ == "pymimalloc"
