"""Memory freed in the first 32 MiB of an arena is taken again before new memory is committed.

Run with MIMALLOC_PURGE_DELAY=-1 (nothing is decommitted, so the committed figure shows reuse exactly), and
"arena" as argument for a heap in an Arena of its own, "python" for Python's heap under install(), "main" for
mimalloc's main heap (else a Heap in mimalloc's first arena). The first round
fills more than one 32 MiB chunk with small blocks, the second asks for the same again: it must find the
first round's slices. v3.4.3 alone looked in the second chunk first and committed up to 24 MiB more
(pmi_mimalloc.c, "the first chunk of an arena")."""

import sys

import pymimalloc

MIB = 1 << 20
BLOCK = 1024
COUNT = 40 * MIB // BLOCK  # past chunk 0, within chunks 0 and 1 (a chunk left holding nothing loses its bin)

def check_first_round(before: int, after_first: int) -> None:
    """The first round must have filled more than chunk 0 (32 MiB), or the second proves nothing."""
    assert after_first - before > 32 * MIB, f"the first round committed only {(after_first - before) / MIB:.1f} MiB"


if sys.argv[1:] == ["python"]:  # Python's heap, under install()
    # 48 MiB: with PYMIMALLOC_INSTALL=1 the heap served the interpreter since start-up, and the first round
    # takes some of its free room before it commits more
    count = 48 * MIB // BLOCK
    pymimalloc.install()
    before = pymimalloc.process_info().current_commit
    objects = [bytes(BLOCK - 64) for _ in range(count)]
    del objects
    after_first = pymimalloc.process_info().current_commit
    check_first_round(before, after_first)
    objects = [bytes(BLOCK - 64) for _ in range(count)]
    del objects
    after_second = pymimalloc.process_info().current_commit
    pymimalloc.uninstall()
    grown = (after_second - after_first) / MIB
    assert grown < 4, f"the second round committed {grown:.1f} MiB more"
    print(f"ok {grown:.1f}")
    sys.exit(0)

arena = pymimalloc.Arena(128 * MIB) if sys.argv[1:] == ["arena"] else None
with pymimalloc.main_heap() if sys.argv[1:] == ["main"] else pymimalloc.Heap(arena=arena) as heap:
    before = pymimalloc.process_info().current_commit
    blocks = [heap.malloc(BLOCK) for _ in range(COUNT)]
    assert arena is None or all(block in arena for block in blocks[::1000])
    del blocks
    after_first = pymimalloc.process_info().current_commit
    check_first_round(before, after_first)
    blocks = [heap.malloc(BLOCK) for _ in range(COUNT)]
    del blocks
    after_second = pymimalloc.process_info().current_commit
grown = (after_second - after_first) / MIB
assert grown < 4, f"the second round committed {grown:.1f} MiB more"
print(f"ok {grown:.1f}")
