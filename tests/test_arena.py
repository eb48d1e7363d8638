from __future__ import annotations

import pytest

import pymimalloc
from childproc import run_program

MIB = 1 << 20


@pytest.mark.mimalloc_errors  # a full arena is an out-of-memory report (ENOMEM)
def test_a_heap_in_an_arena_allocates_only_there_and_raises_when_full() -> None:
    arena = pymimalloc.Arena(pymimalloc.Arena.min_size())
    assert arena.size >= pymimalloc.Arena.min_size() and arena.address != 0
    heap = pymimalloc.Heap(arena=arena)
    assert heap.arena is arena
    blocks = []
    with pytest.raises(MemoryError):
        for _ in range(arena.size // MIB + 1):
            blocks.append(heap.malloc(MIB))
    assert 0 < len(blocks) <= arena.size // MIB
    assert all(block in arena for block in blocks)
    assert all(arena.address <= b.address < arena.address + arena.size for b in blocks)
    with pymimalloc.Heap() as elsewhere:
        assert elsewhere.malloc(64) not in arena
    for block in blocks[:4]:
        block.free()
    heap.collect(force=True)
    again = heap.malloc(MIB)  # freed room is usable again
    assert again in arena
    del again, blocks
    heap.destroy()


@pytest.mark.parametrize("size, exception", [
    (0, ValueError), (1 << 20, ValueError), (-1, ValueError), (2**80, MemoryError), ("big", TypeError),
])
def test_bad_arena_sizes(size, exception) -> None:
    with pytest.raises(exception):
        pymimalloc.Arena(size)


def test_a_released_arena_takes_no_new_heap() -> None:
    with pymimalloc.Arena(pymimalloc.Arena.min_size()) as arena:
        heap = pymimalloc.Heap(arena=arena)
    assert arena.released and "released" in repr(arena)
    with pytest.raises(ValueError, match="released"):
        pymimalloc.Heap(arena=arena)
    block = heap.malloc(100)  # a heap already in it keeps working
    assert block in arena
    arena.release()  # idempotent
    with pytest.raises(TypeError):
        pymimalloc.Heap(arena="arena")  # type: ignore[arg-type]


def test_arena_contains_foreign_addresses_is_false() -> None:
    arena = pymimalloc.Arena(pymimalloc.Arena.min_size())
    for address in (0, 1, -1, 2**64, arena.address + arena.size):
        assert address not in arena
    assert arena.address in arena


@pytest.mark.parametrize("where", ["first-arena", "arena", "python", "main"])
def test_freed_slices_are_taken_again_before_new_memory_is_committed(where: str) -> None:
    result = run_program("arena_reuses_freed_slices.py", where, env={"MIMALLOC_PURGE_DELAY": "-1"}, timeout=120)
    assert result.stdout.startswith("ok ")
