"""The medium path of csrc/pmi_mimalloc.c (blocks of 1 to 512 KiB from the first page of their queue, without
mimalloc's generic allocation) against mimalloc's own path: pmi_medium_path_walk runs two new heaps of this thread
through the same random walk, one with the medium path first, and compares their page queues after every step (block
size, blocks used, capacity, reserve, free lists, retire mark, full flag, the generic count) and the blocks' contents.
Mutants each made a walk of seed 1, 2 or 3 differ within 540 steps: the path without its retire-mark clear, without its
move of a full page, without its generic count, with a calloc that does not zero, and with the 1,000th count its own.

Prints "ok", the steps walked, and the blocks and full-page moves the medium path made (the test asks for enough of
both, so that walks that never took the path cannot pass); the first difference otherwise, and exits with 1. PYMIMALLOC_MEDIUM_WALK_STEPS sets the steps per walk
(default 5,000)."""

from __future__ import annotations

import os
import sys

from pymimalloc._core import ffi, lib

STEPS = int(os.environ.get("PYMIMALLOC_MEDIUM_WALK_STEPS", "5000"))
SEEDS = (1, 2, 3, 4, 5, 6)
medium_blocks = ffi.new("size_t*")
full_moves = ffi.new("size_t*")
report = ffi.new("char[2048]")
total_blocks = total_moves = 0
for seed in SEEDS:
    step = lib.pmi_medium_path_walk(seed, STEPS, medium_blocks, full_moves, report, len(report))
    if step != 0:
        print(f"seed {seed}: " + (ffi.string(report).decode() or "out of memory"))
        sys.exit(1)
    total_blocks += medium_blocks[0]
    total_moves += full_moves[0]
print("ok", len(SEEDS) * STEPS, total_blocks, total_moves)
