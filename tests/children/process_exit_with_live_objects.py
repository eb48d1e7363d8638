"""Exit with heaps, blocks, a view, a closed heap's block, a thread allocating and a reference cycle alive."""

import threading

import pymimalloc

heaps = [pymimalloc.Heap() for _ in range(5)]
blocks = [h.malloc(n) for h in heaps for n in (8, 4096, 1 << 21)]
view = blocks[0].view
closed = pymimalloc.Heap(); kept = closed.malloc(64); closed.close()
threading.Thread(target=lambda: heaps[1].malloc(100)).start()
cycle = [blocks]; cycle.append(cycle)
print("ok")
