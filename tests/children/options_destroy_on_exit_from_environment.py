"""Run with MIMALLOC_DESTROY_ON_EXIT=1: exit with a heap, a block, an array and a main-heap block alive."""

import pymimalloc

heap = pymimalloc.Heap()
block = heap.malloc(1000)
block.view[:] = b"z" * 1000
array = heap.zeros(1000)
main_block = pymimalloc.malloc(100)
# exit with all of them alive: Python frees them during finalization
