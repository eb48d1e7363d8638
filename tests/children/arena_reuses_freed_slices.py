"""Memory freed in the first 32 MiB of an arena is taken again before new memory is committed.

Run with MIMALLOC_PURGE_DELAY=-1 (nothing is decommitted, so the committed figure shows reuse exactly), and
"arena" as argument for a heap in an Arena of its own, "python" for Python's heap under install() (else a Heap in
mimalloc's first arena). The first round
fills more than one 32 MiB chunk with small blocks, the second asks for the same again: it must find the
first round's slices. v3.4.3 alone looked in the second chunk first and committed up to 24 MiB more
(pmi_mimalloc.c, "the first chunk of an arena")."""

import sys

import pymimalloc

MIB = 1 << 20
BLOCK = 1024
COUNT = 40 * MIB // BLOCK  # past chunk 0, within chunks 0 and 1 (a chunk left holding nothing loses its bin)

if sys.argv[1:] == ["python"]:  # the first heap of the process is Python's
    pymimalloc.install()
    objects = [bytes(BLOCK - 64) for _ in range(COUNT)]
    del objects
    after_first = pymimalloc.process_info().current_commit
    objects = [bytes(BLOCK - 64) for _ in range(COUNT)]
    del objects
    after_second = pymimalloc.process_info().current_commit
    pymimalloc.uninstall()
    grown = (after_second - after_first) / MIB
    assert grown < 4, f"the second round committed {grown:.1f} MiB more"
    print(f"ok {grown:.1f}")
    sys.exit(0)

arena = pymimalloc.Arena(128 * MIB) if sys.argv[1:] == ["arena"] else None
with pymimalloc.Heap(arena=arena) as heap:
    blocks = [heap.malloc(BLOCK) for _ in range(COUNT)]
    assert arena is None or all(block in arena for block in blocks[::1000])
    del blocks
    after_first = pymimalloc.process_info().current_commit
    blocks = [heap.malloc(BLOCK) for _ in range(COUNT)]
    del blocks
    after_second = pymimalloc.process_info().current_commit
grown = (after_second - after_first) / MIB
assert grown < 4, f"the second round committed {grown:.1f} MiB more"
print(f"ok {grown:.1f}")
