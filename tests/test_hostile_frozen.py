"""A frozen heap (a walk or snapshot in progress) is not a closed heap, refuses other threads' allocations, and
a snapshot's __exit__ thaws only what its own __enter__ froze."""

from __future__ import annotations

import pymimalloc
from childproc import run_program
from threads import run_threads


def test_frozen_heap_is_not_closed(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    with heap.snapshot():
        assert heap.closed is False
        assert "frozen" in repr(heap), repr(heap)
        assert heap.__enter__() is heap
    assert not heap.closed
    block.free()


def test_frozen_heap_does_not_contain_an_impossible_address(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    with heap.snapshot():
        assert heap.contains(2**70) is False
        assert (2**70 in heap) is False
    block.free()


def test_frozen_heap_refuses_another_threads_allocation_with_runtime_error(heap: pymimalloc.Heap) -> None:
    block = heap.malloc(8)
    outcome: list[object] = []

    def allocate() -> None:
        try:
            outcome.append(heap.malloc(8))
        except Exception as exc:  # noqa: BLE001 - any outcome is reported below
            outcome.append(exc)

    with heap.snapshot():
        run_threads(allocate)
    assert len(outcome) == 1 and type(outcome[0]) is RuntimeError, outcome
    outcome.clear()
    block.free()


def test_snapshot_exit_thaws_only_what_its_enter_froze() -> None:
    run_program("frozen_snapshot_exit.py")
