"""Pickling a Block raises TypeError under every protocol and leaves the block usable."""

import pickle
import pymimalloc

heap = pymimalloc.Heap()
block = heap.malloc(64)
for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    try:
        pickle.dumps(block, protocol=protocol)
    except TypeError:
        pass
    else:
        raise AssertionError(f"pickle.dumps(block, protocol={protocol}) did not raise TypeError")
block.view[:4] = b"okay"
assert bytes(block.view[:4]) == b"okay"
block.free()
heap.destroy()
