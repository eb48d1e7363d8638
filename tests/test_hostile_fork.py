"""fork() while another thread allocates, reallocates, walks, prints statistics or reserves arenas: every forked child
can use its heap and close it, make a heap and reserve an arena. And the system that looks for more such hangs: every
public operation in a thread while the main thread forks (children/fork_every_operation.py), with a check that no
public callable is left out of it unnoticed."""

from __future__ import annotations

import os
import runpy
from typing import Any

import pytest

import pymimalloc
from builds import memory_checker_build
from childproc import CHILDREN, run_program

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_a_fork_between_a_close_and_its_release_leaves_the_child_no_closed_heap_unreleased() -> None:
    """A fork copies heaps that a close decided to release but had not released yet (the fork held the world lock
    the release takes); nothing in the child would release them. Before csrc/pmi_heap.c's fork handler released
    them, about half of the children had one."""
    stuck, forks = run_program("fork_during_close.py", "150", timeout=120).stdout.split()
    assert (stuck, forks) == ("0", "150"), f"{stuck} of {forks} children kept a closed, empty heap unreleased"


def test_fork_while_a_thread_allocates_child_can_close_heap() -> None:
    run_program("fork_close_heap.py", timeout=30)


def test_fork_while_a_thread_reallocates_child_can_use_its_blocks() -> None:
    run_program("fork_use_blocks.py", timeout=30)


def test_fork_while_a_thread_walks_child_can_allocate_and_close() -> None:
    run_program("fork_walk_heap.py", timeout=30)


def test_fork_while_a_thread_prints_statistics_child_can_make_a_heap() -> None:
    run_program("fork_print_stats.py", timeout=60)


def test_fork_while_a_thread_reserves_arenas_child_can_reserve_one() -> None:
    run_program("fork_reserve_arena.py", timeout=60)


@pytest.mark.skipif(memory_checker_build(), reason="GCC 12's AddressSanitizer has no fork handlers for its allocator: "
                    "thousands of forks beside a busy thread would find that hang (tests/builds.py), not pymimalloc's")
def test_fork_while_a_thread_runs_any_public_operation_child_can_do_everything() -> None:
    # 88 runs of 40 forks: 35-40 s in a release or checked build on 2 cores. A child that hangs costs 10 s more
    # (forking.wait_for), and the program goes on to the next operation, so that it names every one that failed.
    run_program("fork_every_operation.py", timeout=240)


def _public_callables() -> set[str]:
    """What fork_every_operation.py must cover: each callable of ``pymimalloc.__all__`` by its name, and each public
    attribute (method, property, field) of the public classes and objects as ``Class.attribute`` (``options.get``)."""
    names: set[str] = set()
    for name in pymimalloc.__all__:
        obj: Any = getattr(pymimalloc, name)
        if isinstance(obj, (str, int)):  # constants: __version__, HANDLER_NAME, mimalloc_version ...
            continue
        if callable(obj):
            names.add(name)
        if isinstance(obj, type) or not callable(obj):  # a class, or an object with methods (options)
            names.update(f"{name}.{attribute}" for attribute in dir(obj) if not attribute.startswith("_"))
    return names


def _child_tables() -> tuple[dict[str, Any], dict[str, str]]:
    """The child's OPERATIONS and SKIPPED, read without running it (its main part runs only as __main__)."""
    namespace = runpy.run_path(str(CHILDREN / "fork_every_operation.py"), run_name="fork_every_operation")
    return namespace["OPERATIONS"], namespace["SKIPPED"]


def test_every_public_callable_is_forked_against_or_skipped_with_a_reason() -> None:
    operations, skipped = _child_tables()
    public = _public_callables()
    assert {"print_stats", "Arena", "Heap", "Heap.visit", "Block.free", "options.override"} <= public  # the walk works
    missing = sorted(public - operations.keys() - skipped.keys())
    assert missing == [], (
        f"public callables that tests/children/fork_every_operation.py neither runs nor skips: {missing}; add each to "
        "OPERATIONS (one call of it, run in a thread while the main thread forks), or to SKIPPED with the reason"
    )
    assert operations.keys().isdisjoint(skipped), "a name is both run and skipped"
    assert all(reason.strip() for reason in skipped.values()), "every skip says why"
    assert set(skipped) <= public, f"skips of names that are not public (any more): {sorted(set(skipped) - public)}"
