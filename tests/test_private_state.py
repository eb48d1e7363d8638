"""What C dereferences is owned by C objects and out of Python's reach: forging private state raises."""

from __future__ import annotations

import pytest

import pymimalloc
from childproc import run_program


def test_forging_every_private_attribute_of_every_public_object_never_crashes() -> None:
    # only its exit counts: a forged size (2**62) may make mimalloc report out of memory
    result = run_program("private_state_fuzz.py", timeout=300,
                         stderr_ok=lambda err: True, check_mimalloc_errors=False)
    assert int(result.stdout.split()[-1]) > 500  # forgeries tried


def test_a_heap_has_no_handle_to_delete_and_cannot_be_bound_twice(heap: pymimalloc.Heap) -> None:
    assert not hasattr(heap, "_handle")
    with pytest.raises(TypeError, match="already owns"):
        heap._open(0)
    with pytest.raises(TypeError, match="already owns"):
        heap._open_main()
    block = heap.malloc(8)
    assert heap.contains(block) and block.heap is heap


def test_an_uninitialised_heap_raises_instead_of_allocating() -> None:
    bare = pymimalloc.Heap.__new__(pymimalloc.Heap)
    with pytest.raises(ValueError, match="never initialised"):
        bare.malloc(8)
    with pytest.raises(ValueError, match="never initialised"):
        bare.closed


def test_a_forged_arena_id_is_refused(heap: pymimalloc.Heap) -> None:
    arena = pymimalloc.Arena(pymimalloc.Arena.min_size())
    arena._id = heap.malloc(8).address  # type: ignore[misc]
    with pytest.raises(ValueError, match="not an arena pymimalloc reserved"):
        pymimalloc.Heap(arena)
    with pytest.raises(ValueError, match="not an arena pymimalloc reserved"):
        arena.contains(0)


def test_a_bad_alignment_reaching_the_c_method_is_refused_before_mimalloc(heap: pymimalloc.Heap) -> None:
    with pytest.raises(ValueError, match="power of two"):
        heap._allocate(8, 3, False)


def test_forged_values_of_pymimalloc_contextvars_are_passed_over() -> None:
    result = run_program("private_contextvars.py", timeout=120)
    assert result.stdout.split() == ["ok", "21"]
