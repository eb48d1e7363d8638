"""Snapshot.__exit__ thaws only what its own __enter__ froze: stray, repeated and nested exits."""

import pymimalloc

def assert_frozen(heap, why):
    try:
        heap.malloc(8)
    except RuntimeError:
        pass
    else:
        raise AssertionError(f"heap.malloc succeeded on a frozen heap ({why})")

heap = pymimalloc.Heap()
block = heap.malloc(32)

never = heap.snapshot()
never.__exit__(None, None, None)          # never entered: nothing to thaw
assert not heap.closed
heap.malloc(8).free()
with heap.snapshot():
    assert_frozen(heap, "snapshot after a stray __exit__")

once = heap.snapshot()
once.__enter__()
assert_frozen(heap, "entered by hand")
once.__exit__(None, None, None)
once.__exit__(None, None, None)           # the second exit does nothing
block.free()
second = heap.malloc(16)

with heap.snapshot():
    inner = heap.snapshot()
    inner.__enter__()
    inner.__exit__(None, None, None)
    assert_frozen(heap, "inside the outer snapshot, after an inner one exited")
    inner.__exit__(None, None, None)
    assert_frozen(heap, "inside the outer snapshot, after an inner one exited twice")
    stray = heap.snapshot()
    stray.__exit__(None, None, None)
    assert_frozen(heap, "inside the outer snapshot, after a never-entered one exited")
    with heap.snapshot():
        pass
    assert_frozen(heap, "inside the outer snapshot, after a nested with-block")
    try:
        second.free()
    except RuntimeError:
        pass
    else:
        raise AssertionError("Block.free succeeded on a frozen heap")
second.free()
heap.malloc(8).free()
assert heap.live_blocks == 0, heap.live_blocks
heap.destroy()
