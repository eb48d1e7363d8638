"""pyarrow's own mimalloc and pymimalloc's in one process; prints the arrays' sum and pyarrow's backend."""

import pyarrow as pa

import pymimalloc

pool = pa.mimalloc_memory_pool()
arrays = [pa.array(range(100000), memory_pool=pool) for _ in range(5)]
heap = pymimalloc.Heap()
blocks = [heap.malloc(n) for n in (10, 1000, 100000)]
buf = pa.allocate_buffer(1 << 20, memory_pool=pool)
assert pool.bytes_allocated() > 0 and heap.live_blocks == 3
arr = heap.zeros(10000)
print(sum(a.sum().as_py() for a in arrays), pool.backend_name)
