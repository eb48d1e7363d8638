"""A thread keeps its emptied huge page (a block above 512 KiB) for its next huge block (csrc/pmi_mimalloc.c, "an
emptied huge page kept for the next huge block"), and gives it back when it should. Checked here, in a heap that
abandons its full pages (mimalloc's default) and in one that keeps them (page_full_retain=-1, the "fifo" preset):

- a freed 1 MiB block's page serves the next 1 MiB block (the same address), a zeroed one included, which reads zero;
- a block that would use half of the kept page or less takes a fresh page, and the kept one goes back (one page left);
- a page above 4 MiB is not kept, nor one of a heap in an exclusive arena;
- a forced collect of the thread gives the kept page back (no page left), and the heap's walk never shows a live
  block that was freed;
- a block freed by another thread is not kept by that thread, and the allocating thread's next huge block still works;
- a block on the reused page that another thread frees leaves that page to this thread (it is not abandoned), and
  the thread holds one such page, not one for each block it handed over, until it collects, forced or not;
- a thread's exit gives its kept page back.
Prints "ok" and the number of checks."""

from __future__ import annotations

import time

import pymimalloc
from threads import Worker, outcome

MiB = 1 << 20
checks = 0


def check(condition: bool, message: str) -> None:
    global checks
    checks += 1
    assert condition, message


def pages(heap: pymimalloc.Heap) -> int:
    return heap.stats().pages


def kept_then_reused(heap: pymimalloc.Heap, label: str) -> None:
    first = heap.malloc(MiB)
    address = first.address
    memoryview(first)[:] = b"\xab" * MiB
    first.free()
    check(pages(heap) == 1, f"{label}: the emptied huge page is kept ({pages(heap)} pages)")
    check(heap.blocks() == [], f"{label}: a walk shows the freed block: {heap.blocks()}")
    again = heap.zalloc(MiB)
    check(again.address == address, f"{label}: the kept page did not serve the next block")
    check(bytes(again) == bytes(MiB), f"{label}: a zeroed block on the kept page is not zero")
    again.free()
    # a block that does not fit: a page of its own, and the kept one goes back (the new page may start where the kept
    # one did, whose slices are free again by then: addresses say nothing here, usable sizes and page counts do)
    bigger = heap.malloc(3 * MiB)
    huge_areas = [area.used for area in heap.areas() if area.block_size > MiB // 2]
    check(huge_areas == [1], f"{label}: huge areas beside a live 3 MiB block, by blocks in use: {huge_areas}")
    bigger.free()
    check(pages(heap) == 1, f"{label}: {pages(heap)} pages after a 3 MiB block came and went")
    small = heap.malloc(MiB)  # half of the kept 3 MiB page or less: a page of its own, and the kept one goes back
    check(small.usable_size < 2 * MiB, f"{label}: a 1 MiB block took the kept 3 MiB page ({small.usable_size} bytes)")
    huge_areas = [area.used for area in heap.areas() if area.block_size > MiB // 2]
    check(huge_areas == [1], f"{label}: huge areas beside a live 1 MiB block, by blocks in use: {huge_areas}")
    small.free()
    check(pages(heap) == 1, f"{label}: the kept 3 MiB page did not go back for a 1 MiB block ({pages(heap)} pages)")
    heap.collect(force=True)
    check(pages(heap) == 0, f"{label}: a forced collect left {pages(heap)} pages")


def not_kept(heap: pymimalloc.Heap, label: str) -> None:
    """Above 4 MiB, and in a heap of an exclusive arena, nothing is kept: only its own thread can give a kept page
    back, and an idle thread held 30 MiB pages for good, which a heap in a 64 MiB arena then lacked (a review)."""
    heap.malloc(8 * MiB).free()
    check(pages(heap) == 0, f"{label}: an 8 MiB block's page was kept ({pages(heap)} pages)")
    arena = pymimalloc.Arena(64 * MiB)
    inside = pymimalloc.Heap(arena=arena)
    inside.malloc(MiB).free()
    check(inside.stats().pages == 0, f"{label}: a heap of an exclusive arena kept a page ({inside.stats().pages} pages)")
    inside.close()


def freed_elsewhere(heap: pymimalloc.Heap, other: Worker, label: str) -> None:
    block = heap.malloc(2 * MiB)
    outcome(other.submit(block.free))  # another thread's free: that thread does not keep the page
    if label == "abandoning":  # the page was abandoned when its block was allocated: the free gives it back at once
        check(pages(heap) == 0, f"{label}: a page freed by another thread stayed ({pages(heap)} pages)")
    blocks = [heap.malloc(size) for size in (3 * MiB, MiB, 600 * 1024)]
    check(len({block.address for block in blocks}) == 3, f"{label}: two live blocks share an address")
    for block in blocks:
        block.free()
    heap.collect(force=True)


def handed_over(heap: pymimalloc.Heap, other: Worker, label: str) -> None:
    """A reused page is not abandoned, so a block on it that another thread frees leaves the page to this thread. The
    next reuse gives back the one before: a producer that handed over every block stranded a page at each reuse (the
    abandoning heap alone: a heap that keeps its full pages leaves every full page to its thread, huge or not)."""
    most = 0
    for _ in range(200):
        heap.malloc(MiB).free()  # kept
        block = heap.malloc(MiB)  # on the kept page
        outcome(other.submit(block.free))
        most = max(most, pages(heap))
    check(most <= 2, f"{label}: a thread that handed its huge blocks over held up to {most} pages")
    heap.collect()  # not forced: the last page, whose block the other thread freed, goes back all the same
    check(pages(heap) == 0, f"{label}: a collect left {pages(heap)} pages with nothing alive")


def thread_exit(heap: pymimalloc.Heap, label: str) -> None:
    def work() -> None:
        heap.malloc(4 * MiB).free()  # kept by this thread, until it exits
    for _ in range(20):
        other = Worker()
        outcome(other.submit(work))
        other.stop()
    # join() returns when the Python thread is done: mimalloc's own end of the thread (a pthread key's destructor,
    # which frees the kept page) may still be running; an AddressSanitizer build showed it. Give it 10 s.
    deadline = time.monotonic() + 10
    while pages(heap) != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    heap.collect(force=True)
    check(pages(heap) == 0, f"{label}: exited threads left {pages(heap)} pages")


for label, options in (("abandoning", {}), ("keeping full pages", {"page_full_retain": -1})):
    with pymimalloc.options.override(**options):
        heap = pymimalloc.Heap()
        other = Worker()
        kept_then_reused(heap, label)
        not_kept(heap, label)
        freed_elsewhere(heap, other, label)
        if label == "abandoning":
            handed_over(heap, other, label)
        thread_exit(heap, label)
        other.stop()
        heap.close()
print("ok", checks)
