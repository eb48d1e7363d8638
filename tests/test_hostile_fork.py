"""fork() while another thread allocates, reallocates, walks, prints statistics or reserves arenas: every forked child
can use its heap and close it, make a heap and reserve an arena."""

from __future__ import annotations

import os

import pytest

from childproc import run_program

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


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
