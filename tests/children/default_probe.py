"""What must never crash, whatever this thread's default heap has become (imported by the default_* children)."""

import pymimalloc
from pymimalloc._core import lib


def probe() -> bool:
    try:
        block = pymimalloc.malloc(8)
    except ValueError:
        pass  # the default heap is a closed heap: the documented answer
    else:
        assert isinstance(block, pymimalloc.Block), block
        block.view[:] = b"12345678"
        assert bytes(block.view) == b"12345678"
        block.free()
    pymimalloc.collect()
    assert isinstance(pymimalloc.default_heap(), pymimalloc.Heap)
    if hasattr(lib, "mi_malloc"):  # mimalloc's own allocation in this thread
        pointer = lib.mi_malloc(64)
        lib.mi_free(pointer)
    return True
