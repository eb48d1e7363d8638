/* Allocator micro-benchmark kernels: the loops run in C, so the figures measure the allocators and not
 * the Python-to-C call (about 40 ns, more than an allocation). Written for pymimalloc; every kernel runs
 * unchanged over each allocator.
 *
 * pmi_bench_run returns nanoseconds per operation (see each pattern), or one of the negative statuses
 * below. It is also compiled, without Python, into the upstream-parity program of
 * benchmarks/build_parity.py (PMI_BENCH_STANDALONE).
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines; the
 * preprocessor expands the pattern table before cffi reads it. */

/* allocators */
#define PMI_BENCH_HEAP      0   /* a pymimalloc Heap's mimalloc heap (mi_heap_malloc) */
#define PMI_BENCH_MIMALLOC  1   /* mimalloc's default (mi_malloc) */
#define PMI_BENCH_PYMALLOC  2   /* CPython's pymalloc (PyObject_Malloc), GIL held */
#define PMI_BENCH_GLIBC     3   /* the C library's malloc */
#define PMI_BENCH_GLUE      4   /* a pymimalloc Heap through the glue a Block uses: pmi_block_alloc/release
                                   (a record, live counters, brackets, tracemalloc hooks); not standalone */
#define PMI_BENCH_OBJECTS   5   /* a pymimalloc Heap through the glue python_objects() uses: pmi_object_malloc and
                                   pmi_object_free (live counters, brackets; no record, no tracemalloc hook: the
                                   hook's own caller traces); not standalone */

/* What a run returns instead of a time: negative, so never a time, and one meaning each. */
#define PMI_BENCH_ENOMEM   -1   /* the allocator under test returned NULL (or a kernel thread could not start) */
#define PMI_BENCH_EINVAL   -2   /* no such pattern or allocator, no heap where one is needed, ops or `param` out of range */
#define PMI_BENCH_ECLOSED  -3   /* the pymimalloc heap is closed (pmi_bench_run_in, pmi_bench_run_glue) */
#define PMI_BENCH_EFROZEN  -4   /* the pymimalloc heap is frozen by a walk or snapshot (the same two) */

/* The patterns, one row each: X(ID, name, kernel, threads, op). The one table: it makes the numbers
 * (PMI_PATTERN_<ID>, counted from 0), the dispatch in pmi_bench.c and the names Python reads
 * (pmi_bench_pattern).
 *   kernel   the function in pmi_bench.c that runs the pattern over one allocator
 *   threads  1 if the kernel starts threads of its own (each takes the GIL itself for pymalloc), else 0
 *   op       what one nanosecond figure counts
 * What they do:
 *   pair     hot malloc+free pair of `size` bytes
 *   batch    LIFO batch of `param` blocks, written, freed half FIFO half LIFO
 *   ring     FIFO ring of 1024 live blocks, each step replaces the oldest
 *   workset  1024 slots, a random slot replaced by an inverse-square size 16 B..32 KiB
 *   realloc  realloc growth 16 B -> 1 MiB by 1/8 steps
 *   calloc   calloc (zalloc) of `size` bytes + free
 *   memset   malloc + memset of `size` bytes + free (the calloc baseline)
 *   xthread  a producer thread allocates, a consumer thread frees
 *   larson   `param` threads (1 to 16), 5000 blocks of 8-1000 B each, random replacement */
#define PMI_BENCH_PATTERNS(X) \
    X(PAIR,    "pair",    k_pair,    0, "malloc+free") \
    X(BATCH,   "batch",   k_batch,   0, "malloc+free: n blocks made, then half freed oldest first, half newest") \
    X(RING,    "ring",    k_ring,    0, "free oldest+malloc") \
    X(WORKSET, "workset", k_workset, 0, "free+malloc, 16 B-32 KiB") \
    X(REALLOC, "realloc", k_realloc, 0, "realloc, 16 B-1 MiB") \
    X(CALLOC,  "calloc",  k_calloc,  0, "calloc+free") \
    X(MEMSET,  "memset",  k_memset,  0, "malloc+memset+free") \
    X(XTHREAD, "xthread", k_xthread, 1, "block, made in one thread and freed in another (a queue between them)") \
    X(LARSON,  "larson",  k_larson,  1, "free+malloc in each thread, 8-1000 B; ns: wall time / every thread's ops")

#define PMI_PATTERN_ENUM(ID, name, kernel, threads, op) PMI_PATTERN_##ID,
enum pmi_bench_pattern { PMI_BENCH_PATTERNS(PMI_PATTERN_ENUM) PMI_PATTERN_COUNT };
#undef PMI_PATTERN_ENUM

/* A pattern's row, for Python: its name and what one figure counts. */
typedef struct pmi_bench_pattern_s {
    const char* name;
    const char* op;
} pmi_bench_pattern_t;
/* The row of pattern number `pattern`, or NULL if there is none (0 <= pattern < PMI_PATTERN_COUNT). */
const pmi_bench_pattern_t* pmi_bench_pattern(int pattern);

/* `heap` is a mimalloc heap (mi_heap_t*), used by PMI_BENCH_HEAP only */
double pmi_bench_run(int pattern, int allocator, void* heap, size_t size, size_t param, size_t ops, uint64_t seed);
/* The same, for PMI_BENCH_HEAP over a pymimalloc heap: the heap cannot close meanwhile (PMI_BENCH_ECLOSED
   or PMI_BENCH_EFROZEN if it is closed or frozen). Not in the standalone build. */
double pmi_bench_run_in(int pattern, pmi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed);
/* PMI_BENCH_GLUE or PMI_BENCH_OBJECTS (`allocator`) over a pymimalloc heap: every allocation and free goes
   through the glue a Block uses (pmi_block_alloc and pmi_block_release) or the glue of the allocator hook under
   python_objects() (pmi_object_malloc and pmi_object_free; zeroed and resized blocks as the hook's, through
   pmi_data_alloc and pmi_data_realloc). PMI_BENCH_ECLOSED or PMI_BENCH_EFROZEN if the heap is closed or frozen,
   before or during the run. Not in the standalone build. */
double pmi_bench_run_glue(int pattern, int allocator, pmi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed);
