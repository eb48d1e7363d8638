"""A heap's life under hostile use: blocks that outlive its close (large alignments, no arenas), __init__ on a
live heap, the main heap's statistics. Scenarios that could crash run in a child (childproc.run_program)."""

from __future__ import annotations

import gc
import weakref

import pytest

import pymimalloc
from childproc import describe, run, run_program


def test_large_aligned_blocks_survive_heap_close() -> None:
    run_program("close_large_aligned.py")


def test_blocks_survive_heap_close_with_arena_allocation_disallowed() -> None:
    run_program("close_without_arenas.py")


def test_closing_heaps_gives_the_os_pages_their_threads_kept_back() -> None:
    """mimalloc's mi_heap_destroy missed the OS pages still in a live thread's queues: 30 heaps whose blocks aligned to
    1 MiB another thread freed kept 41 MiB of address space, and 60 heaps used by two threads with
    disallow_arena_alloc 556 MiB (now 0 and 0)."""
    aligned, without_arenas = map(int, run_program("close_leaves_nothing_mapped.py").stdout.split())
    assert aligned < 8, f"the address space grew by {aligned} MiB over 30 closed heaps (aligned blocks)"
    assert without_arenas < 32, f"the address space grew by {without_arenas} MiB over 60 closed heaps (no arenas)"


def test_an_emptied_huge_page_serves_the_next_huge_block_and_goes_back_when_it_should() -> None:
    """A thread keeps its emptied huge page (csrc/pmi_mimalloc.c) for its next huge block, zeroed when asked, in a heap
    that abandons full pages and in one that keeps them; a block that does not fit, or uses half of it or less, sends it
    back; so do a forced collect and the thread's exit; another thread's free does not keep it, nor a block above 4 MiB
    or a heap of an exclusive arena; a thread that hands the blocks of its reused page over holds one page, not one a
    block. Without the kept page the first check fails (mimalloc v3.4.3 gives every emptied huge page back to its
    arena), and without the reuse's give-back the last."""
    ok, checks = run_program("huge_page_kept.py").stdout.split()
    assert (ok, checks) == ("ok", "31")


def test_reinitialising_a_live_heap_raises_and_keeps_it_working() -> None:
    run_program("close_reinitialise.py")


def test_main_heap_stats_returns_a_dict() -> None:
    stats = pymimalloc.main_heap().mimalloc_stats()
    assert isinstance(stats, dict)
    assert pymimalloc.main_heap().stats().pages >= 0


@pytest.mark.parametrize("order", ["main-first", "sub-first", "installed at start"])
def test_import_in_a_sub_interpreter_says_why_it_is_refused(order: str) -> None:
    # installed at start: each sub-interpreter's start runs pymimalloc.pth too, and must leave stderr empty
    env = {"PYMIMALLOC_INSTALL": "1"} if order == "installed at start" else {}
    result = run_program("subinterpreter_import.py", order, env=env, drop=("PYMIMALLOC_INSTALL",))
    if result.stdout.strip() == "SKIP":
        pytest.skip("this Python has no module to make sub-interpreters with")
    assert result.stdout.strip() == "OK", result.stdout


def test_a_heap_subclass_that_keeps_its_blocks_is_collected() -> None:
    """A Block refers to its Heap; a Heap subclass that keeps its Blocks makes a cycle, which the garbage collector
    collects like any other (a review found 200 such heaps, and their memory, alive for good)."""

    class Pool(pymimalloc.Heap):
        def __init__(self) -> None:
            super().__init__()
            self.kept: list[pymimalloc.Block] = []

    gc.collect()
    pools = []
    for _ in range(20):
        pool = Pool()
        pool.kept.append(pool.malloc(4096))
        pools.append(weakref.ref(pool))
        del pool
    gc.collect()
    assert [p() for p in pools] == [None] * 20


def test_a_heap_that_resurrects_itself_in_del_is_still_found_by_heap_of() -> None:
    """The collector clears weak references before it runs finalizers: a Heap subclass whose __del__ keeps the heap
    (in a cycle, collected by gc) was no longer found by heap_of() while it stayed open (a review)."""
    saved: list[pymimalloc.Heap] = []

    class Keeps(pymimalloc.Heap):
        def __del__(self) -> None:
            saved.append(self)

    heap = Keeps()
    heap.me = heap  # type: ignore[attr-defined]  # a cycle, which only the collector frees
    del heap
    gc.collect()
    (heap,) = saved
    assert not heap.closed
    block = heap.malloc(10)
    assert pymimalloc.heap_of(block) is heap
    heap.close()
    assert pymimalloc.heap_of(block) is None
    block.free()


def test_heap_of_never_hands_out_a_heap_being_freed() -> None:
    """A Heap's __dict__ is cleared before its entry in heap_of()'s registry goes: code run then (here a __del__ of
    something the heap kept) must get None, not the Heap being freed (that segfaulted). In a child: it could crash."""
    code = (
        "import pymimalloc\n"
        "found = []\n"
        "class Watch:\n"
        "    def __del__(self):\n"
        "        found.append(pymimalloc.heap_of(address))\n"
        "class Keeps(pymimalloc.Heap):\n"
        "    pass\n"
        "heap = Keeps()\n"
        "block = heap.malloc(64)\n"
        "address = block.address\n"
        "block.free()\n"
        "del block  # a Block keeps its Heap\n"
        "heap.watch = Watch()\n"
        "del heap\n"
        "print(found)\n"
    )
    result = run(["-c", code])
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    assert result.stdout.strip() == "[None]"
