"""heap.stats() as a HeapStats, pymimalloc.format_size, and pymimalloc.measure()."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import pymimalloc
from childproc import run_program
from threads import run_threads


def test_heap_stats_are_exact_and_typed() -> None:
    heap = pymimalloc.Heap()
    blocks = [heap.malloc(100) for _ in range(1000)]
    stats = heap.stats()
    assert isinstance(stats, pymimalloc.HeapStats)
    assert (stats.live_blocks, stats.live_bytes, stats.allocations) == (1000, 100_000, 1000)
    assert stats.peak_live_bytes == 100_000
    assert stats.pages >= 1 and stats.peak_pages >= stats.pages
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.live_blocks = 0  # type: ignore[misc]
    del blocks[500:]
    after = heap.stats()
    assert (after.live_blocks, after.live_bytes, after.peak_live_bytes, after.allocations) == (500, 50_000, 100_000, 1000)
    blocks.clear()
    heap.close()
    with pytest.raises(ValueError):
        heap.stats()


def test_heap_stats_count_huge_blocks_and_no_silent_zeros() -> None:
    heap = pymimalloc.Heap()
    big = heap.malloc(2 << 20)
    stats = heap.stats()
    assert stats.huge_bytes >= 2 << 20
    for field in dataclasses.fields(stats):
        if field.name != "pages_abandoned":
            assert getattr(stats, field.name) > 0, field.name
    big.free()
    heap.close()


def test_statistics_count_every_thread_and_reads_survive_concurrent_resets() -> None:
    """mimalloc v3.4.3 adds up a heap's per-thread counters for the reading thread alone: a live thread's pages read
    0, and -4 once this thread freed its blocks; its huge bytes never went down; a read while another thread reset
    the statistics raised MemoryError. The child checks the counts with a live worker, and 3,000 reads during resets."""
    ok, reads = run_program("stats_from_every_thread.py", timeout=120).stdout.split()
    assert (ok, reads) == ("ok", "3000")


def test_main_heap_stats_survive_a_reset() -> None:
    """mi_stats_reset zeroes the main heap's statistics header; the main heap's stats then raised MemoryError."""
    pymimalloc.reset_stats()
    assert pymimalloc.main_heap().mimalloc_stats()["mimalloc_version"] == 30403
    assert pymimalloc.main_heap().stats().live_blocks >= 0


def test_heap_stats_str_reads_like_tracemalloc() -> None:
    heap = pymimalloc.Heap()
    blocks = [heap.malloc(64 * 1024) for _ in range(200)]  # 12.5 MiB
    text = str(heap.stats())
    assert text.startswith("200 live blocks, 12.5 MiB (peak 12.5 MiB); 200 allocations; "), text
    del blocks
    heap.close()


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (512, "512 B"), (10 * 1024 - 1, "10239 B"),
                                            (10 * 1024, "10.0 KiB"), (1258291, "1229 KiB"),
                                            (int(1.2 * 2**30), "1229 MiB"), (12 * 2**20, "12.0 MiB"),
                                            (-2048, "-2048 B"), (5 << 40, "5120 GiB"), (500 << 40, "500 TiB")])
def test_format_size_matches_tracemalloc(size: int, text: str) -> None:
    import tracemalloc

    assert pymimalloc.format_size(size) == text
    assert tracemalloc._format_size(size, False) == text  # type: ignore[attr-defined]


def test_measure_counts_what_the_block_kept() -> None:
    with pymimalloc.measure() as m:
        kept = [str(n) * 10 for n in range(10_000)]
        temporary = [bytes(1000) for _ in range(1000)]
        del temporary
    assert m.blocks >= 10_000
    assert m.kept >= 10_000 * 49  # a str of up to 50 characters takes a block of 64 bytes or so
    assert m.peak >= m.kept + 1000 * 1000
    assert m.allocations >= m.blocks + 1000
    frozen = (m.kept, m.peak, m.blocks, m.allocations)
    more = [str(n) for n in range(1000)]
    assert (m.kept, m.peak, m.blocks, m.allocations) == frozen  # figures are frozen at the end
    assert "kept" in str(m) and "MiB" in str(m) or "KiB" in str(m)
    assert kept[9999] == "9999" * 10 and more[-1] == "999"
    del kept
    assert "done" in repr(m)


def test_measure_sees_only_its_own_thread() -> None:
    other: list[str] = []
    ready = threading.Event()
    go = threading.Event()

    def elsewhere() -> None:
        ready.set()
        go.wait()
        other.extend(str(n) * 5 for n in range(5000))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    ready.wait()
    with pymimalloc.measure() as m:
        go.set()
        thread.join()
        mine = [str(n) * 5 for n in range(100)]
    assert 100 <= m.blocks < 1000
    assert len(other) == 5000 and len(mine) == 100


def test_measure_is_single_use_and_reports_misuse() -> None:
    m = pymimalloc.measure()
    with pytest.raises(RuntimeError, match="not started"):
        _ = m.kept
    assert "not started" in repr(m)
    with m:
        pass
    with pytest.raises(RuntimeError, match="once"):
        with m:
            pass


def test_measure_exits_cleanly_on_an_exception() -> None:
    with pytest.raises(KeyError):
        with pymimalloc.measure() as m:
            table = {n: [n] for n in range(100)}
            raise KeyError("boom")
    assert m.blocks >= 100 and table[99] == [99]


def test_peak_is_none_once_another_thread_frees_into_the_heap() -> None:
    """A block allocated in one thread and freed in another only ever raises the first thread's counts: the sum
    of per-thread peaks would then be far above the truth, so the peak says it is unknown instead."""
    heap = pymimalloc.Heap()
    for _ in range(20):
        batch = [heap.malloc(50_000) for _ in range(20)]  # 1 MB alive at a time
        run_threads(batch.clear)                            # freed in another thread
    stats = heap.stats()
    assert (stats.live_blocks, stats.live_bytes, stats.allocations) == (0, 0, 400)
    assert stats.peak_live_bytes is None and "unknown" in str(stats)
    heap.close()
    with pymimalloc.measure() as m:
        kept = [str(n) * 10 for n in range(1000)]
        run_threads(kept.clear)
    assert m.peak is None and "unknown" in str(m) and m.blocks < 1000


def test_peak_is_none_once_another_thread_only_resized() -> None:
    """A thread that only grew and shrank another thread's block leaves its counts at zero, yet its peak is
    added in: 100 bytes freed, a block grown by 100 and shrunk again read 300 as the peak of a heap that never
    held more than 200 (the stripe was judged by its counts; it now carries a mark of its own)."""
    heap = pymimalloc.Heap()
    grown = heap.malloc(100)
    kept = heap.malloc(100)
    kept.free()
    resized: list[pymimalloc.Block] = []
    run_threads(lambda: resized.append(heap.realloc(heap.realloc(grown, 200), 100)))
    stats = heap.stats()
    assert (stats.live_blocks, stats.live_bytes, stats.allocations) == (1, 100, 2)
    assert stats.peak_live_bytes is None


def test_stats_of_a_closed_heap_name_the_call() -> None:
    heap = pymimalloc.Heap()
    heap.close()
    with pytest.raises(ValueError, match="^stats: the heap is closed$"):
        heap.stats()


def test_python_objects_restarting_tracemalloc_names_itself_and_the_callers_line() -> None:
    # a process whose hook is in place from the start (PYMIMALLOC_INSTALL) has nothing to restart
    result = run_program("allocator_tracemalloc_restart_warning.py", drop=("PYMIMALLOC_INSTALL", "PYTHONMALLOC"))
    assert result.stdout.split() == ["ok"]


def test_measure_ends_quietly_while_another_thread_walks_its_heap() -> None:
    """Another thread's walk freezes the heap as the block ends: the close then raised RuntimeError into the
    measuring thread, in place of the block's own outcome (found by review). The figures are the block's end; the
    heap closes when the measurement goes."""
    import threading

    with pymimalloc.measure() as m:
        kept = [str(i) * 3 for i in range(50)]
        walking, ended = threading.Event(), threading.Event()

        def walk() -> None:
            def visit(area: object, block: object) -> bool:
                walking.set()
                ended.wait(10)
                return True

            m.heap.visit(visit)

        walker = threading.Thread(target=walk)
        walker.start()
        assert walking.wait(10)
        assert m.heap.frozen
        ended.set()  # the walk finishes soon; the block may end while it still runs
    walker.join()
    assert m.blocks >= 50 and kept
