/* Allocator micro-benchmark kernels: the loops run in C, so the figures measure the allocators and not
 * the Python-to-C call (about 40 ns, more than an allocation). Written for pymimalloc from the workload
 * descriptions in its benchmark issue; every kernel runs unchanged over each allocator.
 *
 * pmi_bench_run returns nanoseconds per operation (see each pattern), or a negative value when the
 * allocator ran out of memory or the arguments are invalid. It is also compiled, without Python, into
 * the upstream-parity program of benchmarks/build_parity.py (PMI_BENCH_STANDALONE).
 * No include guards: cffi's cdef parser reads this file as it is. */

/* allocators */
#define PMI_BENCH_HEAP      0   /* a pymimalloc Heap's mimalloc heap (mi_heap_malloc) */
#define PMI_BENCH_MIMALLOC  1   /* mimalloc's default (mi_malloc) */
#define PMI_BENCH_PYMALLOC  2   /* CPython's pymalloc (PyObject_Malloc), GIL held */
#define PMI_BENCH_GLIBC     3   /* the C library's malloc */
#define PMI_BENCH_GLUE      4   /* a pymimalloc Heap through the glue a Block uses: pmi_block_alloc/release
                                   (a record, live counters, brackets, tracemalloc hooks); not standalone */

/* patterns; "op" is what one nanosecond figure counts */
#define PMI_PATTERN_PAIR      0  /* hot malloc+free pair of `size` bytes; op = one pair */
#define PMI_PATTERN_BATCH     1  /* LIFO batch of `param` blocks, written, freed half FIFO half LIFO; op = alloc+free */
#define PMI_PATTERN_RING      2  /* FIFO ring of 1024 live blocks, each step replaces the oldest; op = free+alloc */
#define PMI_PATTERN_WORKSET   3  /* 1024 slots, random slot replaced by an inverse-square size 16 B..32 KiB; op = free+alloc */
#define PMI_PATTERN_REALLOC   4  /* realloc growth 16 B -> 1 MiB by 1/8 steps; op = one realloc */
#define PMI_PATTERN_CALLOC    5  /* calloc (zalloc) of `size` bytes + free; op = one pair */
#define PMI_PATTERN_MEMSET    6  /* malloc + memset of `size` bytes + free (the calloc baseline); op = one pair */
#define PMI_PATTERN_XTHREAD   7  /* producer thread allocates, consumer thread frees; op = one block */
#define PMI_PATTERN_LARSON    8  /* `param` threads, 5000 blocks of 8-1000 B each, random replacement; op = free+alloc */

/* `heap` is a mimalloc heap (mi_heap_t*), used by PMI_BENCH_HEAP only */
double pmi_bench_run(int pattern, int allocator, void* heap, size_t size, size_t param, size_t ops, uint64_t seed);
/* The same, for PMI_BENCH_HEAP over a pymimalloc heap: the heap cannot close meanwhile (-3 if closed
   or frozen). Not in the standalone build. */
double pmi_bench_run_in(int pattern, pmi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed);
/* PMI_BENCH_GLUE over a pymimalloc heap: every allocation and free goes through pmi_block_alloc and
   pmi_block_release, as a Block's do (-3 if the heap is closed or frozen). Not in the standalone build. */
double pmi_bench_run_glue(int pattern, pmi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed);
