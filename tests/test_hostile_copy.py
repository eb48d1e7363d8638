"""Copies and pickles: a Block copies into an independent Block; heaps, snapshots, arenas and options refuse;
records round-trip. Scenarios that could crash run in a child (childproc.run_program)."""

from __future__ import annotations

import copy
import functools
import pickle
from collections.abc import Callable

import pytest

import pymimalloc
from childproc import run_program


@pytest.mark.parametrize("duplicate", ["copy", "deepcopy"])
def test_copy_of_a_block_is_an_independent_block(duplicate: str) -> None:
    run_program("copy_block.py", duplicate)


def test_pickling_a_block_raises_type_error() -> None:
    run_program("copy_pickle_block.py")


@functools.cache
def _shared_arena() -> pymimalloc.Arena:
    # an arena's memory stays reserved for the life of the process: reserve one for all cases
    return pymimalloc.Arena(pymimalloc.Arena.min_size())


_UNCOPYABLE: dict[str, Callable[[pymimalloc.Heap], object]] = {
    "heap": lambda heap: heap,
    "main_heap": lambda heap: pymimalloc.main_heap(),
    "snapshot": lambda heap: heap.snapshot(),
    "arena": lambda heap: _shared_arena(),
    "options": lambda heap: pymimalloc.options,
}


@pytest.mark.parametrize("operation", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"])
@pytest.mark.parametrize("make", list(_UNCOPYABLE.values()), ids=list(_UNCOPYABLE))
def test_copying_or_pickling_a_resource_raises_type_error(
    heap: pymimalloc.Heap, make: Callable[[pymimalloc.Heap], object], operation: Callable[[object], object]
) -> None:
    target = make(heap)
    with pytest.raises(TypeError):
        operation(target)


def test_copying_or_pickling_a_live_snapshot_raises_type_error() -> None:
    run_program("copy_live_snapshot.py")


def test_records_copy_and_pickle_round_trip(heap: pymimalloc.Heap) -> None:
    blocks = [heap.malloc(n) for n in (16, 300, 5000)]
    records: list[object] = [heap.areas()[0], heap.blocks()[0], pymimalloc.process_info()]
    for record in records:
        assert copy.copy(record) == record
        assert copy.deepcopy(record) == record
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            restored = pickle.loads(pickle.dumps(record, protocol=protocol))
            assert type(restored) is type(record) and restored == record
    del blocks


@pytest.mark.parametrize("operation", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"])
def test_a_measurement_refuses_copies_in_every_state(operation: Callable[[object], object]) -> None:
    """A copy of a running measure() shared its heap and with-block: ending the copy ended the original, which then
    missed what its block made next, silently (found by review). Not started, running or done, it refuses."""
    fresh = pymimalloc.measure()
    with pytest.raises(TypeError, match="^Measurement cannot be copied"):
        operation(fresh)
    with pymimalloc.measure() as running:
        with pytest.raises(TypeError, match="^Measurement cannot be copied"):
            operation(running)
        kept = [bytearray(100) for _ in range(1000)]
    assert running.blocks >= 1000
    with pytest.raises(TypeError, match="^Measurement cannot be copied"):
        operation(running)
    del kept
