"""Random walks over the page queues of Python's heap, under install(), checking after every step that no empty page is
marked retired where mimalloc's retire collection does not look (pmi_python_heap_retired_out_of_sight: not the first
of its queue, or outside the bins it walks). Such a page stays until a forced collect. The walks found one path there
(2026-12-06; 1 KiB blocks, all three seeds, at steps 10,535, 40,712 and 1,135): a retired page refilled on the fast
path, passed over by the slow path for a fuller page, and emptied behind it; csrc/pmi_mimalloc.c's pmi_malloc_generic
closes it. They do not find the path a review of 8295ac1 found by hand (allocator_retired_page_refilled.py), which
needs a page refilled exactly to full.

Each walk runs in a new thread (its own part of Python's heap, away from the interpreter's allocations here), on bytes
objects of one length (256-byte, 1 KiB or 4 KiB blocks: 256, 64 or 16 to a 64 KiB page; 16 KiB blocks: 31 to a 512 KiB
page, which is moved to the full queue when it fills), with a seed of its own. Blocks above 1 KiB come from the first
page of their queue without mimalloc's generic allocation (pmi_theap_malloc_medium in csrc/pmi_mimalloc.c; under gdb,
walks of 3,000 steps took 79,554 blocks there and moved 2,149 full pages to the full queue from there). A step
allocates up to 20 blocks, frees up to 20 (the newest, or a run from anywhere), hands up to 20 to a second thread that
frees them (into the walker's pages, or into pages abandoned full), or collects (forced one time in five). The walker
keeps at most eight pages' worth of blocks. Every block holds its own byte (or zeros: every other allocation step
callocs), checked when it is freed; the second thread's queues are checked after each hand-off. Prints "ok" and the
steps walked; a violation prints the walk, seed, step and last steps, and exits with 1. PYMIMALLOC_PAGE_WALK_STEPS
sets the steps per walk (default 50,000)."""

from __future__ import annotations

import collections
import os
import random
import sys

from threads import Worker, outcome, run_threads

import pymimalloc
from pymimalloc._core import lib

pymimalloc.install()
PER_PAGE = {200: 256, 867: 64, 3950: 16, 16000: 31}  # bytes(n) with the object's 33 bytes: 256 B to 16 KiB blocks
STEPS = int(os.environ.get("PYMIMALLOC_PAGE_WALK_STEPS", "50000"))
SEEDS = (1, 2, 3)
failures: list[str] = []


def walk(length: int, seed: int, other: Worker) -> None:
    rng = random.Random(seed)
    most = 8 * PER_PAGE[length]
    held: list[tuple[int, bytes]] = []  # each block with the byte it must hold throughout
    recent: collections.deque[str] = collections.deque(maxlen=20)
    fill = 0

    def check(step: int) -> bool:
        here = lib.pmi_python_heap_retired_out_of_sight()
        there = outcome(other.submit(lib.pmi_python_heap_retired_out_of_sight)) if recent[-1].startswith("hand") else 0
        if here > 0 or there > 0:
            failures.append(f"length {length}, seed {seed}, step {step}: {here} retired pages out of sight in the "
                            f"walker's queues, {there} in the other thread's; last steps: {', '.join(recent)}")
            return False
        return True

    def take(count: int, newest: bool) -> list[tuple[int, bytes]]:
        start = len(held) - count if newest else rng.randrange(len(held) - count + 1)
        chosen = held[start:start + count]
        del held[start:start + count]
        assert all(block.count(expected) == length for expected, block in chosen), "a block lost its fill"
        return chosen

    for step in range(STEPS):
        r = rng.random()
        count = rng.randint(1, 20)
        if r < 0.45 and len(held) + count <= most:
            fill = (fill + 1) % 256
            # bytes(length) is a calloc, which must zero a reused block; the repeat is a malloc
            held += [(fill, bytes([fill]) * length) if fill % 2 else (0, bytes(length)) for _ in range(count)]
            recent.append(f"allocate {count}")
        elif r < 0.85 and held:
            newest = rng.random() < 0.5
            take(min(count, len(held)), newest)  # freed here, as the list of them goes
            recent.append(f"free {count} {'newest' if newest else 'from anywhere'}")
        elif r < 0.92 and held:
            box = [take(min(count, len(held)), rng.random() < 0.5)]
            outcome(other.submit(box.clear))  # freed in the other thread
            recent.append(f"hand {count} to the other thread")
        else:
            force = rng.random() < 0.2
            pymimalloc.collect(force=force)
            recent.append(f"collect{' (forced)' if force else ''}")
        if not check(step):
            return
    del held


other = Worker()
for length in PER_PAGE:
    for seed in SEEDS:
        run_threads(lambda: walk(length, seed, other))
other.stop()
if failures:
    print(*failures, sep="\n", file=sys.stderr)
    sys.exit(1)
print("ok", len(PER_PAGE) * len(SEEDS) * STEPS)
