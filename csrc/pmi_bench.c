/* Allocator micro-benchmark kernels; see pmi_bench.h. */
#ifndef PMI_BENCH_STANDALONE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mimalloc.h>
#ifndef PMI_BENCH_STANDALONE
#include "pmi_heap.h"
#include "pmi_internal.h"
#else
typedef struct pmi_heap_s pmi_heap_t;
#endif
#include "pmi_bench.h"

#define PMI_INLINE static inline __attribute__((always_inline))

/* ---- the allocators, selected by a constant so each kernel is compiled once per allocator ---- */

/* PMI_BENCH_GLUE: `heap` is really a pmi_heap_t*, and a pointer is a pmi_block_t* (a_data gives its memory) */
#ifndef PMI_BENCH_STANDALONE
#define PMI_GLUE_HEAP(heap) ((pmi_heap_t*)(void*)(heap))

/* The glue fills in records its caller stores (a Python Block embeds one; CPython's object allocator
   provides that storage). Here each thread keeps a free list of records, carved from chunks of the C
   library's heap that are all freed when the run ends, so the kernel times the glue and not a malloc. */
#define PMI_RECORD_CHUNK 256
typedef struct pmi_record_chunk_s {
    struct pmi_record_chunk_s* next;
    pmi_block_t records[PMI_RECORD_CHUNK];
} pmi_record_chunk_t;
static pthread_mutex_t pmi_record_chunks_lock = PTHREAD_MUTEX_INITIALIZER;
static pmi_record_chunk_t* pmi_record_chunks;
static __thread pmi_block_t* pmi_record_free_list;  /* linked through next_deferred */

static pmi_block_t* record_take(void) {
    pmi_block_t* r = pmi_record_free_list;
    if (__builtin_expect(r == NULL, 0)) {
        pmi_record_chunk_t* c = (pmi_record_chunk_t*)malloc(sizeof(pmi_record_chunk_t));
        if (c == NULL) return NULL;
        pthread_mutex_lock(&pmi_record_chunks_lock);
        c->next = pmi_record_chunks;
        pmi_record_chunks = c;
        pthread_mutex_unlock(&pmi_record_chunks_lock);
        for (size_t i = 0; i + 1 < PMI_RECORD_CHUNK; i++) c->records[i].next_deferred = &c->records[i + 1];
        c->records[PMI_RECORD_CHUNK - 1].next_deferred = NULL;
        r = &c->records[0];
    }
    pmi_record_free_list = r->next_deferred;
    return r;
}

static inline void record_give(pmi_block_t* r) {
    r->next_deferred = pmi_record_free_list;
    pmi_record_free_list = r;
}

/* After a run (its threads joined): every record is given back, so all chunks go. */
static void records_free_all(void) {
    pthread_mutex_lock(&pmi_record_chunks_lock);
    while (pmi_record_chunks != NULL) {
        pmi_record_chunk_t* c = pmi_record_chunks;
        pmi_record_chunks = c->next;
        free(c);
    }
    pthread_mutex_unlock(&pmi_record_chunks_lock);
    pmi_record_free_list = NULL;
}

static inline pmi_block_t* glue_alloc(pmi_heap_t* heap, size_t size, bool zero) {
    pmi_block_t* r = record_take();
    if (r == NULL) return NULL;
    if (pmi_block_alloc(heap, r, size, 0, zero) != NULL) return r;
    record_give(r);
    return NULL;
}

static inline void glue_free(pmi_block_t* r) {
    pmi_block_release(r);
    record_give(r);
}

/* PMI_BENCH_OBJECTS: `heap` is a pmi_heap_t* too, and a pointer is the block itself. The free looks its page up
   once, with the lookup the allocator hook's free uses in this process (the hook installs the one without the
   commit test where pmi_page_map_committed()), before it hands a chosen heap's block to pmi_object_free. Both are
   inlined into the kernel, as the glue is into the hook's functions: CPython calls those, so a call is all either
   side pays. */
static atomic_bool objects_page_map_committed;  /* set by pmi_bench_run before the kernel starts */

PMI_INLINE void* objects_malloc(pmi_heap_t* heap, size_t size) {
    return pmi_object_malloc(heap, pmi_thread_self(), size);
}

PMI_INLINE void objects_free(pmi_heap_t* heap, void* p) {
    struct mi_page_s* const page = atomic_load_explicit(&objects_page_map_committed, memory_order_relaxed)
        ? pmi_page_of_committed(p) : pmi_page_of(p);
    pmi_object_free(heap, pmi_thread_self(), page, p);
}
#endif

PMI_INLINE void* a_data(const int kind, void* p) {
#ifndef PMI_BENCH_STANDALONE
    if (kind == PMI_BENCH_GLUE) return ((pmi_block_t*)p)->data;
#endif
    (void)kind;
    return p;
}

PMI_INLINE void* a_malloc(const int kind, mi_heap_t* heap, size_t size) {
    switch (kind) {
    case PMI_BENCH_HEAP:     return mi_heap_malloc(heap, size);
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_GLUE:     return glue_alloc(PMI_GLUE_HEAP(heap), size, false);
    case PMI_BENCH_OBJECTS:  return objects_malloc(PMI_GLUE_HEAP(heap), size);
#endif
    case PMI_BENCH_MIMALLOC: return mi_malloc(size);
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_PYMALLOC: return PyObject_Malloc(size);
#endif
    default:                 return malloc(size);
    }
}

PMI_INLINE void* a_calloc(const int kind, mi_heap_t* heap, size_t size) {
    switch (kind) {
    case PMI_BENCH_HEAP:     return mi_heap_zalloc(heap, size);
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_GLUE:     return glue_alloc(PMI_GLUE_HEAP(heap), size, true);
    case PMI_BENCH_OBJECTS:  return pmi_data_alloc(PMI_GLUE_HEAP(heap), size, true);  /* as the hook's calloc */
#endif
    case PMI_BENCH_MIMALLOC: return mi_zalloc(size);
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_PYMALLOC: return PyObject_Calloc(1, size);
#endif
    default:                 return calloc(1, size);
    }
}

PMI_INLINE void* a_realloc(const int kind, mi_heap_t* heap, void* p, size_t size) {
    switch (kind) {
    case PMI_BENCH_HEAP:     return mi_heap_realloc(heap, p, size);
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_GLUE: {   /* as Heap.realloc: a new record; the old one (its data moved) is given back */
        pmi_block_t* into = record_take();
        if (into == NULL) return NULL;
        if (pmi_block_realloc((pmi_block_t*)p, into, size) == NULL) { record_give(into); return NULL; }
        record_give((pmi_block_t*)p);
        return into;
    }
    case PMI_BENCH_OBJECTS:  return pmi_data_realloc(PMI_GLUE_HEAP(heap), p, size);  /* as the hook's realloc */
#endif
    case PMI_BENCH_MIMALLOC: return mi_realloc(p, size);
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_PYMALLOC: return PyObject_Realloc(p, size);
#endif
    default:                 return realloc(p, size);
    }
}

PMI_INLINE void a_free(const int kind, mi_heap_t* heap, void* p) {
    (void)heap;
    switch (kind) {
    case PMI_BENCH_HEAP:
    case PMI_BENCH_MIMALLOC: mi_free(p); return;
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_GLUE:     glue_free((pmi_block_t*)p); return;
    case PMI_BENCH_OBJECTS:  objects_free(PMI_GLUE_HEAP(heap), p); return;
#endif
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_PYMALLOC: PyObject_Free(p); return;
#endif
    default:                 free(p); return;
    }
}

/* pymalloc needs the GIL; cffi released it around our call. Threads take it per batch of operations. */
#define PMI_GIL_BATCH 32
#ifndef PMI_BENCH_STANDALONE
typedef PyGILState_STATE pmi_gil_t;
/* take the GIL for the whole kernel or thread (a C thread gets its thread state once, here) */
PMI_INLINE pmi_gil_t gil_take(const int kind) { return kind == PMI_BENCH_PYMALLOC ? PyGILState_Ensure() : PyGILState_UNLOCKED; }
PMI_INLINE void gil_give(const int kind, pmi_gil_t g) { if (kind == PMI_BENCH_PYMALLOC) PyGILState_Release(g); }
/* let other threads have the GIL for a moment */
PMI_INLINE void gil_yield(const int kind) {
    if (kind == PMI_BENCH_PYMALLOC) { PyThreadState* ts = PyEval_SaveThread(); PyEval_RestoreThread(ts); }
}
#else
typedef int pmi_gil_t;
PMI_INLINE pmi_gil_t gil_take(const int kind) { (void)kind; return 0; }
PMI_INLINE void gil_give(const int kind, pmi_gil_t g) { (void)kind; (void)g; }
PMI_INLINE void gil_yield(const int kind) { (void)kind; }
#endif

static inline uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline uint64_t rnd(uint64_t* state) {  /* xorshift64* */
    uint64_t x = *state;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Write the first and last byte, and tell the compiler the memory is observed: without the barrier GCC
   may drop a malloc+memset+free sequence altogether, since it knows what malloc and free do. */
static inline void touch(void* p, size_t size) {
    volatile unsigned char* b = (volatile unsigned char*)p;
    b[0] = 1;
    if (size > 1) b[size - 1] = 2;
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* inverse-square sizes between 16 B and 32 KiB: density proportional to 1/size^2 */
static inline size_t inverse_square_size(uint64_t* state) {
    const double u = (double)(rnd(state) >> 11) * (1.0 / 9007199254740992.0);
    const double lo = 1.0 / 16.0, hi = 1.0 / 32768.0;
    size_t size = (size_t)(1.0 / (lo - u * (lo - hi)));
    return size < 16 ? 16 : (size > 32768 ? 32768 : size);
}

#define PMI_SLOTS 1024

/* ---- kernels: each takes (kind, heap, size, param, ops, seed), uses what its pattern needs, and returns
   ns/op or a PMI_BENCH_E* status ---- */

PMI_INLINE double k_pair(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)param; (void)seed;
    const uint64_t t0 = now_ns();
    for (size_t i = 0; i < ops; i++) {
        void* p = a_malloc(kind, heap, size);
        if (p == NULL) return PMI_BENCH_ENOMEM;
        touch(a_data(kind, p), size);
        a_free(kind, heap, p);
    }
    return (double)(now_ns() - t0) / (double)ops;
}

/* Out of memory in a kernel: free the `n` blocks it holds (NULL entries skipped), so its ENOMEM leaves nothing behind */
PMI_INLINE double free_held(const int kind, mi_heap_t* heap, void** blocks, size_t n) {
    for (size_t i = 0; i < n; i++) if (blocks[i] != NULL) a_free(kind, heap, blocks[i]);
    return PMI_BENCH_ENOMEM;
}

PMI_INLINE double k_batch(const int kind, mi_heap_t* heap, size_t size, size_t n, size_t ops, uint64_t seed) {
    (void)seed;
    if (n == 0) return PMI_BENCH_EINVAL;
    void** blocks = (void**)malloc(n * sizeof(void*));
    if (blocks == NULL) return PMI_BENCH_ENOMEM;
    const size_t rounds = (ops + n - 1) / n;
    const uint64_t t0 = now_ns();
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++) {
            blocks[i] = a_malloc(kind, heap, size);
            if (blocks[i] == NULL) { free_held(kind, heap, blocks, i); free(blocks); return PMI_BENCH_ENOMEM; }
            touch(a_data(kind, blocks[i]), size);
        }
        for (size_t i = 0; i < n / 2; i++) a_free(kind, heap, blocks[i]);                 /* first half, FIFO */
        for (size_t i = n; i-- > n / 2;) a_free(kind, heap, blocks[i]);                  /* second half, LIFO */
    }
    const double ns = (double)(now_ns() - t0) / (double)(rounds * n);
    free(blocks);
    return ns;
}

PMI_INLINE double k_ring(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)param; (void)seed;
    void* ring[PMI_SLOTS];
    for (size_t i = 0; i < PMI_SLOTS; i++) {
        ring[i] = a_malloc(kind, heap, size);
        if (ring[i] == NULL) return free_held(kind, heap, ring, i);
        touch(a_data(kind, ring[i]), size);
    }
    const uint64_t t0 = now_ns();
    for (size_t i = 0; i < ops; i++) {
        const size_t slot = i % PMI_SLOTS;  /* the oldest block */
        a_free(kind, heap, ring[slot]);
        ring[slot] = a_malloc(kind, heap, size);
        if (ring[slot] == NULL) return free_held(kind, heap, ring, PMI_SLOTS);
        touch(a_data(kind, ring[slot]), size);
    }
    const double ns = (double)(now_ns() - t0) / (double)ops;
    for (size_t i = 0; i < PMI_SLOTS; i++) a_free(kind, heap, ring[i]);
    return ns;
}

PMI_INLINE double k_workset(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)size; (void)param;
    void* slots[PMI_SLOTS];
    uint64_t state = seed | 1;
    for (size_t i = 0; i < PMI_SLOTS; i++) {
        const size_t size = inverse_square_size(&state);
        slots[i] = a_malloc(kind, heap, size);
        if (slots[i] == NULL) return free_held(kind, heap, slots, i);
        touch(a_data(kind, slots[i]), size);
    }
    const uint64_t t0 = now_ns();
    for (size_t i = 0; i < ops; i++) {
        const size_t slot = rnd(&state) % PMI_SLOTS;
        const size_t size = inverse_square_size(&state);
        a_free(kind, heap, slots[slot]);
        slots[slot] = a_malloc(kind, heap, size);
        if (slots[slot] == NULL) return free_held(kind, heap, slots, PMI_SLOTS);
        touch(a_data(kind, slots[slot]), size);
    }
    const double ns = (double)(now_ns() - t0) / (double)ops;
    for (size_t i = 0; i < PMI_SLOTS; i++) a_free(kind, heap, slots[i]);
    return ns;
}

PMI_INLINE double k_realloc(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)size; (void)param; (void)seed;
    size_t count = 0;
    const uint64_t t0 = now_ns();
    while (count < ops) {
        size = 16;
        void* p = a_malloc(kind, heap, size);
        if (p == NULL) return PMI_BENCH_ENOMEM;
        while (size < (1u << 20)) {
            size += size / 8 + 1;
            void* q = a_realloc(kind, heap, p, size);
            if (q == NULL) { a_free(kind, heap, p); return PMI_BENCH_ENOMEM; }
            p = q;
            touch(a_data(kind, p), size);
            count++;
        }
        a_free(kind, heap, p);
    }
    return (double)(now_ns() - t0) / (double)count;
}

/* calloc, or malloc + memset: zeroed memory either way */
PMI_INLINE double k_zeroed(const int kind, mi_heap_t* heap, size_t size, size_t ops, bool zeroed) {
    const uint64_t t0 = now_ns();
    for (size_t i = 0; i < ops; i++) {
        void* p;
        if (zeroed) p = a_calloc(kind, heap, size);
        else { p = a_malloc(kind, heap, size); if (p != NULL) memset(a_data(kind, p), 0, size); }
        if (p == NULL) return PMI_BENCH_ENOMEM;
        touch(a_data(kind, p), size);
        a_free(kind, heap, p);
    }
    return (double)(now_ns() - t0) / (double)ops;
}

PMI_INLINE double k_calloc(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)param; (void)seed;
    return k_zeroed(kind, heap, size, ops, true);
}

PMI_INLINE double k_memset(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)param; (void)seed;
    return k_zeroed(kind, heap, size, ops, false);
}

/* -- producer/consumer: a single-producer single-consumer ring of pointers -- */

#define PMI_QUEUE 4096
typedef struct pmi_queue_s {
    _Atomic(void*) items[PMI_QUEUE];
    atomic_size_t head, tail;  /* producer writes head, consumer writes tail */
    int kind; mi_heap_t* heap; size_t size, ops;
    atomic_int failed;
} pmi_queue_t;

#define PMI_XTHREAD(kind_) \
static void* pmi_consumer_##kind_(void* arg) { \
    pmi_queue_t* q = (pmi_queue_t*)arg; \
    size_t tail = 0; \
    pmi_gil_t g = gil_take(kind_); size_t held = 0; \
    while (tail < q->ops) { \
        if (tail == atomic_load_explicit(&q->head, memory_order_acquire)) { \
            if (atomic_load(&q->failed)) break; \
            gil_yield(kind_); held = 0;  /* let the producer run */ \
            continue; \
        } \
        void* p = atomic_load_explicit(&q->items[tail % PMI_QUEUE], memory_order_relaxed); \
        a_free(kind_, q->heap, p); \
        tail++; \
        atomic_store_explicit(&q->tail, tail, memory_order_release); \
        if (++held == PMI_GIL_BATCH) { gil_yield(kind_); held = 0; } \
    } \
    gil_give(kind_, g); \
    return NULL; \
} \
static double k_xthread_##kind_(mi_heap_t* heap, size_t size, size_t ops) { \
    pmi_queue_t* q = (pmi_queue_t*)calloc(1, sizeof(pmi_queue_t)); \
    if (q == NULL) return PMI_BENCH_ENOMEM; \
    q->kind = kind_; q->heap = heap; q->size = size; q->ops = ops; \
    pthread_t consumer; \
    const uint64_t t0 = now_ns(); \
    if (pthread_create(&consumer, NULL, pmi_consumer_##kind_, q) != 0) { free(q); return PMI_BENCH_ENOMEM; } \
    pmi_gil_t g = gil_take(kind_); size_t held = 0; \
    for (size_t head = 0; head < ops; head++) { \
        while (head - atomic_load_explicit(&q->tail, memory_order_acquire) >= PMI_QUEUE) { \
            gil_yield(kind_); held = 0; \
        } \
        void* p = a_malloc(kind_, heap, size); \
        if (p == NULL) { atomic_store(&q->failed, 1); break; } \
        touch(a_data(kind_, p), size); \
        atomic_store_explicit(&q->items[head % PMI_QUEUE], p, memory_order_relaxed); \
        atomic_store_explicit(&q->head, head + 1, memory_order_release); \
        if (++held == PMI_GIL_BATCH) { gil_yield(kind_); held = 0; } \
    } \
    gil_give(kind_, g); \
    pthread_join(consumer, NULL); \
    const double ns = (double)(now_ns() - t0) / (double)ops; \
    const int failed = atomic_load(&q->failed); \
    free(q); \
    return failed ? PMI_BENCH_ENOMEM : ns; \
}

/* -- larson-like: each thread keeps 5000 blocks of 8..1000 B and replaces random ones -- */

#define PMI_LARSON_BLOCKS 5000
typedef struct pmi_larson_s { mi_heap_t* heap; size_t ops; uint64_t seed; atomic_int failed; } pmi_larson_t;

#define PMI_LARSON(kind_) \
static void* pmi_larson_thread_##kind_(void* arg) { \
    pmi_larson_t* L = (pmi_larson_t*)arg; \
    void** blocks = (void**)calloc(PMI_LARSON_BLOCKS, sizeof(void*)); \
    uint64_t state = L->seed | 1; \
    if (blocks == NULL) { atomic_store(&L->failed, 1); return NULL; } \
    pmi_gil_t g = gil_take(kind_); size_t held = 0; \
    for (size_t i = 0; i < PMI_LARSON_BLOCKS; i++) { \
        const size_t size = 8 + rnd(&state) % 993; \
        blocks[i] = a_malloc(kind_, L->heap, size); \
        if (blocks[i] == NULL) { atomic_store(&L->failed, 1); break; } \
        touch(a_data(kind_, blocks[i]), size); \
    } \
    for (size_t i = 0; i < L->ops && !atomic_load(&L->failed); i++) { \
        const size_t slot = rnd(&state) % PMI_LARSON_BLOCKS; \
        const size_t size = 8 + rnd(&state) % 993; \
        a_free(kind_, L->heap, blocks[slot]); \
        blocks[slot] = a_malloc(kind_, L->heap, size); \
        if (blocks[slot] == NULL) { atomic_store(&L->failed, 1); break; } \
        touch(a_data(kind_, blocks[slot]), size); \
        if (++held == PMI_GIL_BATCH) { gil_yield(kind_); held = 0; } \
    } \
    for (size_t i = 0; i < PMI_LARSON_BLOCKS; i++) if (blocks[i] != NULL) a_free(kind_, L->heap, blocks[i]); \
    gil_give(kind_, g); \
    free(blocks); \
    return NULL; \
} \
static double k_larson_##kind_(mi_heap_t* heap, size_t threads, size_t ops, uint64_t seed) { \
    pthread_t tids[16]; pmi_larson_t args[16]; \
    if (threads == 0 || threads > 16) return PMI_BENCH_EINVAL; \
    const uint64_t t0 = now_ns(); \
    for (size_t t = 0; t < threads; t++) { \
        args[t].heap = heap; args[t].ops = ops; args[t].seed = seed + 7919 * t; atomic_init(&args[t].failed, 0); \
        if (pthread_create(&tids[t], NULL, pmi_larson_thread_##kind_, &args[t]) != 0) { threads = t; break; } \
    } \
    int failed = 0; \
    for (size_t t = 0; t < threads; t++) { pthread_join(tids[t], NULL); failed |= atomic_load(&args[t].failed); } \
    return failed ? PMI_BENCH_ENOMEM : (double)(now_ns() - t0) / (double)(ops * threads); \
}

PMI_XTHREAD(0) PMI_XTHREAD(1) PMI_XTHREAD(2) PMI_XTHREAD(3)
PMI_LARSON(0) PMI_LARSON(1) PMI_LARSON(2) PMI_LARSON(3)
#ifndef PMI_BENCH_STANDALONE
PMI_XTHREAD(4) PMI_LARSON(4) PMI_XTHREAD(5) PMI_LARSON(5)
#endif

/* The threaded kernels, one per allocator: `kind` is a constant where they are called, so this folds away. */
PMI_INLINE double k_xthread(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)param; (void)seed;
    switch (kind) {
    case 0: return k_xthread_0(heap, size, ops);
    case 1: return k_xthread_1(heap, size, ops);
    case 2: return k_xthread_2(heap, size, ops);
#ifndef PMI_BENCH_STANDALONE
    case 4: return k_xthread_4(heap, size, ops);
    case 5: return k_xthread_5(heap, size, ops);
#endif
    default: return k_xthread_3(heap, size, ops);
    }
}

PMI_INLINE double k_larson(const int kind, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    (void)size;
    switch (kind) {
    case 0: return k_larson_0(heap, param, ops, seed);
    case 1: return k_larson_1(heap, param, ops, seed);
    case 2: return k_larson_2(heap, param, ops, seed);
#ifndef PMI_BENCH_STANDALONE
    case 4: return k_larson_4(heap, param, ops, seed);
    case 5: return k_larson_5(heap, param, ops, seed);
#endif
    default: return k_larson_3(heap, param, ops, seed);
    }
}

/* ---- dispatch, from the table in pmi_bench.h ---- */

/* One pattern over the allocator `kind` (a constant in each caller). A kernel that runs in this thread does
   so with the GIL held for pymalloc; one that starts threads lets each of them take it. */
PMI_INLINE double run_pattern(const int kind, int pattern, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    switch (pattern) {
#define PMI_PATTERN_CASE(ID, name, kernel, threads, op) \
    case PMI_PATTERN_##ID: { \
        if (threads) return kernel(kind, heap, size, param, ops, seed); \
        const pmi_gil_t g = gil_take(kind); \
        const double ns = kernel(kind, heap, size, param, ops, seed); \
        gil_give(kind, g); \
        return ns; \
    }
    PMI_BENCH_PATTERNS(PMI_PATTERN_CASE)
#undef PMI_PATTERN_CASE
    default: return PMI_BENCH_EINVAL;
    }
}

static double run_kind(const int kind, int pattern, mi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    switch (kind) {  /* a constant per case: each kernel is specialised for its allocator */
    case PMI_BENCH_HEAP:     return run_pattern(PMI_BENCH_HEAP, pattern, heap, size, param, ops, seed);
    case PMI_BENCH_MIMALLOC: return run_pattern(PMI_BENCH_MIMALLOC, pattern, heap, size, param, ops, seed);
    case PMI_BENCH_PYMALLOC: return run_pattern(PMI_BENCH_PYMALLOC, pattern, heap, size, param, ops, seed);
#ifndef PMI_BENCH_STANDALONE
    case PMI_BENCH_GLUE:     return run_pattern(PMI_BENCH_GLUE, pattern, heap, size, param, ops, seed);
    case PMI_BENCH_OBJECTS:  return run_pattern(PMI_BENCH_OBJECTS, pattern, heap, size, param, ops, seed);
#endif
    default:                 return run_pattern(PMI_BENCH_GLIBC, pattern, heap, size, param, ops, seed);
    }
}

static const pmi_bench_pattern_t pmi_patterns[PMI_PATTERN_COUNT] = {
#define PMI_PATTERN_ROW(ID, name, kernel, threads, op) [PMI_PATTERN_##ID] = { name, op },
    PMI_BENCH_PATTERNS(PMI_PATTERN_ROW)
#undef PMI_PATTERN_ROW
};

const pmi_bench_pattern_t* pmi_bench_pattern(int pattern) {
    return pattern >= 0 && pattern < PMI_PATTERN_COUNT ? &pmi_patterns[pattern] : NULL;
}

double pmi_bench_run(int pattern, int allocator, void* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    if (pattern < 0 || pattern >= PMI_PATTERN_COUNT || allocator < 0 || allocator > 5 || ops == 0) return PMI_BENCH_EINVAL;
    if ((allocator == PMI_BENCH_HEAP || allocator >= PMI_BENCH_GLUE) && heap == NULL) return PMI_BENCH_EINVAL;
#ifdef PMI_BENCH_STANDALONE
    if (allocator == PMI_BENCH_PYMALLOC || allocator >= PMI_BENCH_GLUE) return PMI_BENCH_EINVAL;
    return run_kind(allocator, pattern, (mi_heap_t*)heap, size, param, ops, seed);
#else
    atomic_store_explicit(&objects_page_map_committed, pmi_page_map_committed(), memory_order_relaxed);
    /* mi_malloc uses the main heap: a walk of it, or a fork, waits for the kernel to finish */
    if (allocator == PMI_BENCH_MIMALLOC) pmi_world_enter();
    const double ns = run_kind(allocator, pattern, (mi_heap_t*)heap, size, param, ops, seed);
    if (allocator == PMI_BENCH_MIMALLOC) pmi_world_leave();
    return ns;
#endif
}

#ifndef PMI_BENCH_STANDALONE
/* Why a pymimalloc heap that is not open cannot run a kernel, as a PMI_BENCH_E* status. */
static double not_open(pmi_heap_t* heap) {
    return pmi_heap_state(heap) == PMI_STATE_FROZEN ? PMI_BENCH_EFROZEN : PMI_BENCH_ECLOSED;
}

double pmi_bench_run_in(int pattern, pmi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    const int status = pmi_heap_enter(heap);
    if (status != PMI_OK) return status == PMI_EFROZEN ? PMI_BENCH_EFROZEN : PMI_BENCH_ECLOSED;
    const double ns = pmi_bench_run(pattern, PMI_BENCH_HEAP, pmi_heap_raw(heap), size, param, ops, seed);
    pmi_heap_leave(heap);
    return ns;
}

double pmi_bench_run_glue(int pattern, int allocator, pmi_heap_t* heap, size_t size, size_t param, size_t ops, uint64_t seed) {
    if (allocator != PMI_BENCH_GLUE && allocator != PMI_BENCH_OBJECTS) return PMI_BENCH_EINVAL;
    if (pmi_heap_state(heap) != PMI_STATE_OPEN) return not_open(heap);
    const double ns = pmi_bench_run(pattern, allocator, (void*)heap, size, param, ops, seed);
    records_free_all();
    /* an allocation refused because another thread closed or froze the heap meanwhile says so */
    if (ns == PMI_BENCH_ENOMEM && pmi_heap_state(heap) != PMI_STATE_OPEN) return not_open(heap);
    return ns;
}
#endif
