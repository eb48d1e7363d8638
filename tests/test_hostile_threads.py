"""Races between threads: frees against a close, address queries against aligned allocation, walks against
walks, closes and short-lived threads, refused closes against allocation, statistics read during a close, and every
lifecycle at once for a few seconds (PYMIMALLOC_STRESS_SECONDS, 6 by default; PYMIMALLOC_STRESS_SEED). Each runs in a child
(childproc.run_program) that must exit 0 with nothing on stderr and no error reported by mimalloc."""

from __future__ import annotations

import json
import os

import pytest

from builds import memory_checker_build
from childproc import run_program


def test_freeing_own_blocks_while_heap_closes_reports_no_mimalloc_error() -> None:
    run_program("threads_free_while_closing.py")


def test_address_queries_race_with_aligned_alloc_and_free() -> None:
    run_program("threads_address_queries.py")


def test_concurrent_walks_of_one_heap_each_see_every_live_block() -> None:
    run_program("threads_concurrent_walks.py")


def test_walking_main_heap_while_heaps_close_into_it() -> None:
    run_program("threads_walk_main_heap.py")


def test_walking_a_heap_while_short_lived_threads_allocate_and_exit() -> None:
    run_program("threads_walk_while_threads_come_and_go.py")


def test_reading_a_heaps_statistics_while_it_closes_reads_no_destroyed_heap() -> None:
    assert run_program("threads_stats_while_closing.py", timeout=180).stdout.split()[0] == "ok"


def test_refused_destroy_and_close_do_not_disturb_other_threads() -> None:
    run_program("threads_refused_close.py")


def test_a_heap_closed_while_a_walk_frees_what_was_dropped_during_it() -> None:
    result = run_program("walk_thaw_close.py", timeout=60)
    ok, closed_in_the_drain, rounds = result.stdout.split()
    assert ok == "OK", rounds
    if int(closed_in_the_drain) == 0:  # timing: say so rather than pass without the race this test is for
        pytest.skip(f"no close landed in a walk's drain in {rounds} rounds on this machine")


STRESS_SECONDS = float(os.environ.get("PYMIMALLOC_STRESS_SECONDS", "6"))


def test_every_lifecycle_at_once_from_eleven_threads() -> None:
    """broad_stress.py: walks, snapshots and visits beside drops, closes, python_objects(), install() and forks
    (its docstring says what it found). Every kind of step ran, and only documented refusals were met."""
    result = run_program("broad_stress.py", str(STRESS_SECONDS), os.environ.get("PYMIMALLOC_STRESS_SEED", "1"),
                         timeout=STRESS_SECONDS + 120)
    ok, counts = result.stdout.split(" ", 1)
    assert ok == "OK" and (json.loads(counts).get("fork", 0) > 0 or memory_checker_build()), result.stdout
