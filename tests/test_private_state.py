"""What C dereferences is owned by C objects and out of Python's reach: forging private state raises."""

from __future__ import annotations

import pathlib

import pytest

import pymimalloc
from childproc import run_program


# pymimalloc's ContextVars today: the lists of as_default(), python_objects() (and measure()) and numpy_allocator()
# blocks of a context. The fuzzer finds them itself; fewer found means its discovery broke, not that they went away.
CONTEXTVARS_KNOWN = 3


def test_forging_every_private_attribute_and_every_contextvar_never_crashes(tmp_path: pathlib.Path) -> None:
    # only its exit counts: a forged size (2**62) may make mimalloc report out of memory
    trace = tmp_path / "forgery.txt"  # the ContextVar forgery being tried, for a crash's report
    failure = ""
    try:
        result = run_program("private_state_fuzz.py", timeout=300, env={"PYMIMALLOC_FUZZ_TRACE": str(trace)},
                             stderr_ok=lambda err: True, check_mimalloc_errors=False)
    except pytest.fail.Exception as error:
        failure = str(error)
    if failure:  # said with the forgery, outside the handler: once
        last = trace.read_text() if trace.exists() else "none (it failed before the ContextVars)\n"
        pytest.fail(f"{failure}\n--- the ContextVar forgery it was trying ---\n{last}", pytrace=False)
    counts = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert int(counts["attribute forgeries"]) > 500
    found = counts["contextvars"].split()[1:]
    assert len(found) >= CONTEXTVARS_KNOWN, found
    # and seen holding real values, which most forgeries are made from: a var found only by name gets a few hundred
    assert sum(int(counts[f"forged {name}"]) > 2000 for name in found) >= CONTEXTVARS_KNOWN, counts
    assert int(counts["contextvar forgeries"].split()[0]) > 10_000


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
