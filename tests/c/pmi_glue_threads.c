/* A ThreadSanitizer harness for pymimalloc's C glue (csrc/pmi_heap.c), without Python.
 *
 * It drives the protocol of csrc/pmi_heap.h from several pthreads the way the Python layer does: heaps
 * are created, allocated from, frozen and walked, pinned, closed (both modes) and released while other
 * threads allocate, free, reallocate and look addresses up; blocks are freed by other threads than the
 * ones that allocated them; threads exit while others walk; numpy's raw-data path is used; and one thread
 * forks while the others work. benchmarks/tsan.py compiles it with -fsanitize=thread together with
 * csrc/pmi_mimalloc.c and csrc/pmi_heap.c and runs it.
 *
 * The harness itself is race-free, so that every report is about the glue or mimalloc:
 *   - A heap handle (the Python Heap object's reference) lives in a slot of `heaps`. A thread that uses
 *     it first raises the slot's `users` count, then loads the handle (a Dekker handshake on sequentially
 *     consistent atomics, as in the glue). Only the manager thread retires a handle: it swaps NULL into
 *     the slot, waits for `users` to drain, and only then calls pmi_heap_release. Closing a heap needs no
 *     such wait: closing while other threads allocate is part of the protocol under test.
 *   - A block (pmi_block_t) or a numpy-style data item has exactly one owner at a time. Blocks change
 *     hands only through the atomic exchange on a slot of `parked` (data items: `parked_data`); whoever
 *     takes one out owns it and must check, reuse or release it. Every block holds its own reference
 *     to its heap, so it may outlive its heap's handle; a data item holds one taken with pmi_heap_ref,
 *     as numpy's handler capsule does.
 *   - Counters that only report progress are relaxed atomics, which give TSan no happens-before edges.
 *
 * Checks: every block's fill pattern (a byte derived from its address) survives hand-overs and
 * reallocation; zeroed allocations are zero; alignment; pmi_heap_of and pmi_usable_size agree with the
 * block; a frozen heap's live count is stable and a walk reports exactly that many blocks; status codes
 * are among those pmi_heap.h allows; after the run every heap (including the ones whose handle was
 * released long before) has pmi_heap_live_blocks == 0 and live_bytes == 0, and every closed heap was
 * destroyed; mimalloc reported no error; forked children exit 0 within a timeout.
 *
 * Usage: pmi_glue_threads [--seconds S] [--seed N] [--forks 0|1] [--freed-lookups 0|1] [--selftest glue|block|plain]
 * (--freed-lookups 1 looks each freed block's address up at once: memory-safe, but a race TSan reports.)
 * Exit status 0 if every check passed. --selftest needs a build with -DPMI_TSAN_SELFTEST: it adds one
 * deliberate data race, which TSan must report (benchmarks/tsan.py --selftest checks that it does).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>  /* PyTraceMalloc_Track: the glue calls it; we check it is inert without Py_Initialize */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pmi_heap.h"
#include "pmi_internal.h"

/* -- configuration --------------------------------------------------------------------------------- */

#define N_HEAPS        4        /* heap slots shared by all threads */
#define N_PARKED       192      /* block hand-over slots */
#define N_PARKED_DATA  32       /* numpy-style data hand-over slots */
#define N_WORKERS      3
#define N_WALKERS      2        /* both walk the same heap (walk_target) at the same time */
#define N_LOCAL        6        /* blocks a worker keeps to itself for a while */
#define BIG            (128u * 1024u)  /* blocks at least this large are limited in number */
#define MAX_BIG        10
#define GRAVEYARD_MAX  16       /* bounded: fork_prepare locks every registered heap, and TSan tracks at most 64 held locks */
#define CHILD_TIMEOUT_S 15

static double run_seconds = 8.0;
static uint64_t base_seed = 12345;
static bool forks_enabled = true;
static bool freed_lookups = false;  /* on: TSan reports them, racing the free by mimalloc's design (.ci/run) */
static bool transients_enabled = true;
static int n_walkers = N_WALKERS;
static bool fresh_stacks = false;  /* short-lived threads on never-reused stacks (so never a reused thread id) */
static const char* selftest = NULL;

/* -- failures and progress ------------------------------------------------------------------------- */

static atomic_long failures;
static __thread const char* thread_name = "main";  /* for failure messages */

#define FAIL(...) do {                                                              \
        atomic_fetch_add_explicit(&failures, 1, memory_order_relaxed);                 \
        fprintf(stderr, "pmi_glue_threads: FAIL at line %d (%s thread): ", __LINE__, thread_name); \
        fprintf(stderr, __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                           \
    } while (0)

enum {
    C_ALLOC, C_ALLOC_CLOSED, C_ALLOC_FROZEN, C_FREE, C_FREE_OTHER_THREAD, C_REALLOC, C_REALLOC_REFUSED,
    C_DATA_ALLOC, C_DATA_REFUSED, C_DATA_FREE, C_DATA_REALLOC, C_WALK, C_WALK_MAIN, C_WALK_BLOCKS,
    C_FREEZE_CLOSED, C_CLOSE_DESTROYED, C_CLOSE_DEFERRED, C_CLOSE_EBUSY, C_CLOSE_EFROZEN, C_CLOSE_EPINNED,
    C_CLOSE_ECLOSED, C_PIN, C_RETIRE, C_TRANSIENT, C_FORK, C_LOOKUP, C_COLLECT, C_COUNT
};
static const char* counter_names[C_COUNT] = {
    "alloc", "alloc_refused_closed", "alloc_refused_frozen", "free", "free_by_other_thread", "realloc",
    "realloc_refused", "data_alloc", "data_alloc_refused", "data_free", "data_realloc", "walk", "walk_main",
    "walked_blocks", "freeze_refused_closed", "close_destroyed", "close_deferred", "close_ebusy",
    "close_efrozen", "close_epinned", "close_eclosed", "pin", "heap_retired", "transient_thread", "fork",
    "lookup", "collect"
};
static atomic_long counters[C_COUNT];

static inline void count(int which) { atomic_fetch_add_explicit(&counters[which], 1, memory_order_relaxed); }

static atomic_int stop;
static inline bool stopping(void) { return atomic_load_explicit(&stop, memory_order_relaxed) != 0; }

/* -- random numbers (one generator per thread) ------------------------------------------------------ */

typedef struct { uint64_t s; } rng_t;

static uint64_t rnd(rng_t* r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}
static unsigned below(rng_t* r, unsigned n) { return (unsigned)(rnd(r) % n); }
static rng_t rng_for(uint64_t stream) {
    rng_t r = { (base_seed + 1) * 0x9E3779B97F4A7C15ull ^ (stream + 1) * 0xD1B54A32D192ED03ull };
    if (r.s == 0) r.s = 1;
    for (int i = 0; i < 8; i++) (void)rnd(&r);
    return r;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* -- contents -------------------------------------------------------------------------------------- */

static uint8_t fill_byte(const void* p) {
    uint64_t a = (uint64_t)(uintptr_t)p;
    a ^= a >> 29;
    a *= 0xBF58476D1CE4E5B9ull;
    a ^= a >> 32;
    return (uint8_t)(a | 1);  /* never 0, so a zeroed or cleared block does not pass */
}

static void fill(void* p, size_t n) {
    if (n > 0) memset(p, fill_byte(p), n);
}

static bool holds(const void* p, size_t n, uint8_t v) {
    const uint8_t* s = (const uint8_t*)p;
    size_t i = 0;
    uint64_t word;
    memset(&word, v, sizeof(word));
    for (; i < n && ((uintptr_t)(s + i) & 7) != 0; i++) if (s[i] != v) return false;
    for (; i + 8 <= n; i += 8) if (*(const uint64_t*)(const void*)(s + i) != word) return false;
    for (; i < n; i++) if (s[i] != v) return false;
    return true;
}

/* -- shared heaps ---------------------------------------------------------------------------------- */

typedef struct {
    _Atomic(pmi_heap_t*) handle;  /* the "Python handle": released only by the manager */
    atomic_int users;
    atomic_bool in_arena;         /* set before `handle` is published: the heap allocates only in arena_id */
} heap_slot_t;

static heap_slot_t heaps[N_HEAPS];
static pmi_heap_t* main_heap;       /* pmi_heap_main_handle(): held by main for the whole run */
static void* arena_id;              /* an exclusive arena some heaps are created in */
static size_t arena_size_factor = 8; /* its size, in units of pmi_arena_granularity() (0: no arena) */
static atomic_int walk_target;      /* the slot both walkers walk now */

/* The heaps whose handle was released while blocks may still live in them: each kept alive by one
   counted reference (pmi_heap_ref) so the end of the run can check they drained and were destroyed.
   Written by the manager only; read by main after joining it. */
static pmi_heap_t* graveyard[GRAVEYARD_MAX];
static size_t graveyard_count;

static pmi_heap_t* heap_use(int slot) {
    atomic_fetch_add(&heaps[slot].users, 1);
    pmi_heap_t* h = atomic_load(&heaps[slot].handle);
    if (h == NULL) atomic_fetch_sub(&heaps[slot].users, 1);
    return h;
}

/* An exclusive arena cannot hold over-aligned blocks (mimalloc puts alignments above 64 KiB in OS
   memory, which a heap bound to an arena may not use: it fails with ENOMEM and reports an error). */
static bool slot_in_arena(int slot) { return slot >= 0 && atomic_load(&heaps[slot].in_arena); }

static void heap_unuse(int slot) { atomic_fetch_sub(&heaps[slot].users, 1); }

static pmi_heap_t* new_heap(rng_t* r, int slot) {
    const bool in_arena = arena_id != NULL && below(r, 4) == 0;
    pmi_heap_t* h = in_arena ? pmi_heap_new_in_arena(arena_id) : pmi_heap_new();
    atomic_store(&heaps[slot].in_arena, in_arena);
    if (h == NULL) { FAIL("pmi_heap_new returned NULL"); return NULL; }
    if (pmi_heap_state(h) != PMI_STATE_OPEN || pmi_heap_is_main(h) || pmi_heap_live_blocks(h) != 0) {
        FAIL("a new heap is not open and empty");
    }
    return h;
}

/* -- blocks ---------------------------------------------------------------------------------------- */

static atomic_int big_live;  /* blocks of BIG bytes or more, to bound the memory in use */
static _Atomic(pmi_block_t*) parked[N_PARKED];

static size_t pick_small_size(rng_t* r) {
    static const size_t sizes[] = { 0, 1, 7, 8, 16, 24, 40, 64, 100, 128, 200, 256, 500, 1000, 1024, 2000,
                                    4096, 5000, 8192, 10000, 32768, 65536, 70000 };
    return sizes[below(r, sizeof(sizes) / sizeof(sizes[0]))];
}

/* A size and alignment for a new block. The large ones (and 1 MiB aligned to 1 MiB) are rationed. */
static size_t pick_size(rng_t* r, bool in_arena, size_t* alignment) {
    static const size_t aligns[] = { 8, 16, 32, 64, 128, 256, 4096, 65536 };
    static const size_t large[] = { 200000, 500000, 1u << 20, 3u << 20 };
    const unsigned k = below(r, 100);
    size_t size = pick_small_size(r);
    *alignment = 0;
    if (k >= 95 && atomic_fetch_add(&big_live, 1) < MAX_BIG) {
        if (k >= 98) { size = 1u << 20; *alignment = in_arena ? 1u << 16 : 1u << 20; return size; }
        size = large[below(r, 4)];
    } else if (k >= 95) {
        atomic_fetch_sub(&big_live, 1);
    }
    if (size < BIG && k < 95 && below(r, 5) == 0) *alignment = aligns[below(r, 8)];
    return size;
}

static void unbig(size_t size) {
    if (size >= BIG) atomic_fetch_sub(&big_live, 1);
}

/* pmi_heap_of and pmi_usable_size on a live block, at its start and inside it */
static void check_lookups(const pmi_block_t* b, const char* where) {
    const uintptr_t a = (uintptr_t)b->data;
    const uintptr_t id = pmi_heap_id(b->owner);
    if (pmi_heap_of(a) != id) {
        FAIL("%s: pmi_heap_of(block %p, %zu bytes) is %p, not the block's heap %p (%s, %s; the heap of its record is %p)", where,
             b->data, b->size, (void*)pmi_heap_of(a), (void*)id, pmi_heap_is_main(b->owner) ? "main" : "user",
             pmi_heap_state(b->owner) == PMI_STATE_CLOSED ? "closed" : "open", (void*)pmi_heap_of((uintptr_t)b));
    }
    const size_t usable = pmi_usable_size(a);
    if (usable < b->size || usable == 0) FAIL("%s: pmi_usable_size %zu < size %zu", where, usable, b->size);
    if (b->size > 1) {
        const size_t half = b->size / 2;
        if (pmi_heap_of(a + half) != id) FAIL("%s: pmi_heap_of(inside block) is not the block's heap", where);
        if (pmi_usable_size(a + half) < b->size - half) FAIL("%s: pmi_usable_size inside the block too small", where);
    }
    count(C_LOOKUP);
}

static void check_block(const pmi_block_t* b, const char* where) {
    if (b->data == NULL) { FAIL("%s: a live record has no data", where); return; }
    if (!holds(b->data, b->size, fill_byte(b->data))) FAIL("%s: block %p (%zu bytes) lost its contents", where, b->data, b->size);
    check_lookups(b, where);
}

static void expect_refusal(const char* what, size_t size, size_t alignment) {
    const int why = pmi_allocation_failure();
    if (why == PMI_ECLOSED) count(C_ALLOC_CLOSED);
    else if (why == PMI_EFROZEN) count(C_ALLOC_FROZEN);
    else FAIL("%s(%zu bytes, alignment %zu) failed with %d (only PMI_ECLOSED or PMI_EFROZEN expected; "
              "mimalloc errors so far %ld, last errno %d)", what, size, alignment, why, pmi_error_count(), pmi_error_last());
}

/* The glue fills in records its caller stores (a Python Block embeds one); here they come from malloc. */
static pmi_block_t* h_alloc(pmi_heap_t* h, size_t size, size_t alignment, bool zero) {
    pmi_block_t* b = (pmi_block_t*)malloc(sizeof(pmi_block_t));
    if (b == NULL) { FAIL("out of memory for a record"); return NULL; }
    if (pmi_block_alloc(h, b, size, alignment, zero) == b) return b;
    free(b);
    return NULL;
}

static void h_release(pmi_block_t* b) {
    pmi_block_release(b);
    if (b->data != NULL) FAIL("pmi_block_release left data in the record");
    free(b);
}

static pmi_block_t* alloc_block(rng_t* r, pmi_heap_t* h, bool in_arena) {
    size_t alignment;
    const size_t size = pick_size(r, in_arena, &alignment);
    const bool zero = below(r, 4) == 0;
    pmi_block_t* b = h_alloc(h, size, alignment, zero);
    if (b == NULL) {
        expect_refusal("pmi_block_alloc", size, alignment);
        unbig(size);
        return NULL;
    }
    count(C_ALLOC);
    if (b->data == NULL || b->size != size || b->owner != h) FAIL("pmi_block_alloc: bad record");
    if (alignment != 0 && (uintptr_t)b->data % alignment != 0) FAIL("block %p not aligned to %zu", b->data, alignment);
    if (zero && !holds(b->data, size, 0)) FAIL("zeroed block of %zu bytes is not zero", size);
    check_lookups(b, "new block");
    fill(b->data, size);
    return b;
}

static void release_block(pmi_block_t* b) {
    const uintptr_t a = (uintptr_t)b->data;
    const size_t size = b->size;
    h_release(b);
    unbig(size);
    count(C_FREE);
    /* just freed (the page may even be unmapped by now): any answer will do, but no crash */
    if (freed_lookups) {
        (void)pmi_heap_of(a);
        (void)pmi_usable_size(a);
        (void)pmi_heap_of(a + (size > 1 ? size - 1 : 0));
    }
}

/* Move `b` to a new size; returns the record that owns the memory now (b itself if refused). */
static pmi_block_t* realloc_block(rng_t* r, pmi_block_t* b) {
    const size_t size = pick_small_size(r);
    void* const old = b->data;
    const size_t old_size = b->size;
    const uint8_t v = fill_byte(old);
    pmi_block_t* nb = (pmi_block_t*)malloc(sizeof(pmi_block_t));
    if (nb == NULL) { FAIL("out of memory for a record"); return b; }
    if (pmi_block_realloc(b, nb, size) == NULL) {
        free(nb);
        expect_refusal("pmi_block_realloc", size, 0);
        count(C_REALLOC_REFUSED);
        if (b->data != old) FAIL("a refused realloc changed the record");
        return b;
    }
    count(C_REALLOC);
    if (b->data != NULL) FAIL("realloc left data in the old record");
    if (nb->size != size || nb->owner != b->owner || nb->data == NULL) FAIL("realloc: bad new record");
    if (!holds(nb->data, old_size < size ? old_size : size, v)) FAIL("realloc lost the contents (%zu -> %zu)", old_size, size);
    h_release(b);  /* the old record, as a Block's dealloc does: frees nothing but the record */
    unbig(old_size);
    fill(nb->data, size);
    check_lookups(nb, "reallocated block");
    return nb;
}

/* Check a block just taken over, then free it, grow it and park it again, or keep it. */
static void consume_block(rng_t* r, pmi_block_t* b) {
    check_block(b, "handed-over block");
    if (b->size < BIG && below(r, 4) == 0) {
        b = realloc_block(r, b);
        pmi_block_t* other = atomic_exchange(&parked[below(r, N_PARKED)], b);
        if (other != NULL) { check_block(other, "handed-over block"); release_block(other); count(C_FREE_OTHER_THREAD); }
        return;
    }
    release_block(b);
    count(C_FREE_OTHER_THREAD);
}

/* Hand `b` to whoever takes it; take over what was parked there. */
static void park_block(rng_t* r, pmi_block_t* b) {
    pmi_block_t* old = atomic_exchange(&parked[below(r, N_PARKED)], b);
    if (old != NULL) consume_block(r, old);
}

/* -- numpy's raw data path (pmi_data_alloc / realloc / free), and the allocator hook's path for Python
      objects in a chosen heap (pmi_object_malloc / pmi_object_free), which counts them the same way ------- */

typedef struct {
    pmi_heap_t* heap;  /* a counted reference, as numpy's handler capsule holds */
    void* p;
    size_t size;
} data_item_t;

static _Atomic(data_item_t*) parked_data[N_PARKED_DATA];

static data_item_t* data_alloc(rng_t* r, pmi_heap_t* h) {
    data_item_t* d = (data_item_t*)malloc(sizeof(*d));
    if (d == NULL) { FAIL("malloc"); return NULL; }
    pmi_heap_ref(h);
    const size_t size = pick_small_size(r) + 1;
    const bool zero = below(r, 3) == 0;
    /* a Python object's block (the hook under python_objects()), or numpy's data */
    void* p = (!zero && below(r, 2) == 0) ? pmi_object_malloc(h, pmi_thread_self(), size) : pmi_data_alloc(h, size, zero);
    if (p == NULL) {  /* closed or frozen: numpy raises MemoryError; the hook goes to Python's own heap */
        const int state = pmi_heap_state(h);
        (void)state;  /* may have changed since: no check possible beyond "not a crash" */
        pmi_heap_unref_public(h);
        free(d);
        count(C_DATA_REFUSED);
        return NULL;
    }
    count(C_DATA_ALLOC);
    if (zero && !holds(p, size, 0)) FAIL("pmi_data_alloc(zero) is not zero");
    if (pmi_heap_of((uintptr_t)p) != pmi_heap_id(h)) FAIL("pmi_heap_of(data) is not the data's heap");
    if (pmi_usable_size((uintptr_t)p) < size) FAIL("pmi_usable_size(data) too small");
    fill(p, size);
    d->heap = h;
    d->p = p;
    d->size = size;
    return d;
}

static void data_release(data_item_t* d) {
    if (((uintptr_t)d->p >> 4) & 1) pmi_object_free(d->heap, pmi_thread_self(), pmi_page_of(d->p), d->p);  /* as the hook frees */
    else pmi_data_free(d->heap, d->p);
    pmi_heap_unref_public(d->heap);  /* the capsule goes */
    free(d);
    count(C_DATA_FREE);
}

static void data_consume(rng_t* r, data_item_t* d) {
    if (!holds(d->p, d->size, fill_byte(d->p))) FAIL("data item lost its contents");
    if (pmi_heap_of((uintptr_t)d->p) != pmi_heap_id(d->heap)) FAIL("pmi_heap_of(data) is not the data's heap");
    if (below(r, 3) == 0) {
        const size_t size = pick_small_size(r) + 1;
        const uint8_t v = fill_byte(d->p);
        void* q = pmi_data_realloc(d->heap, d->p, size);  /* NULL while frozen: p stays */
        if (q != NULL) {
            count(C_DATA_REALLOC);
            if (!holds(q, d->size < size ? d->size : size, v)) FAIL("pmi_data_realloc lost the contents");
            d->p = q;
            d->size = size;
            fill(q, size);
            data_item_t* other = atomic_exchange(&parked_data[below(r, N_PARKED_DATA)], d);
            if (other != NULL) data_release(other);
            return;
        }
    }
    data_release(d);
}

/* -- the self-test's deliberate race (only with -DPMI_TSAN_SELFTEST) --------------------------------- */

#ifdef PMI_TSAN_SELFTEST
/* One thread hands a block over through `selftest_slot` and then, without any synchronisation, writes
   to it; the other takes it, waits for a relaxed flag (no happens-before in TSan's model) and releases
   it. Variants:
     glue:  the write is to the record's `size` field, which pmi_record_release (our glue) then reads:
            the racing access's top frame is in csrc/pmi_heap.c.
     block: the write is to the block's first bytes, which mimalloc's free then overwrites with its free
            list link: the racing access's top frame is in mimalloc, below our glue's frames. A
            suppression broad enough to hide races under pmi_ frames would hide this one.
     plain: two threads increment a plain global: the race is in the harness alone. */
static _Atomic(pmi_block_t*) selftest_slot;
static atomic_int selftest_written;
static atomic_int selftest_released;
static long selftest_plain;

__attribute__((noinline)) static void pmi_selftest_racy_write(pmi_block_t* b) {
    if (strcmp(selftest, "glue") == 0) ((volatile pmi_block_t*)b)->size = b->size;
    else if (strcmp(selftest, "block") == 0) *(volatile uint64_t*)b->data = 0x5a5a5a5a5a5a5a5aull;
    else selftest_plain++;
}

static void* selftest_writer(void* arg) {
    (void)arg;
    pmi_block_t* b = h_alloc(main_heap, 64, 0, false);
    if (b == NULL) { FAIL("selftest alloc"); return NULL; }
    atomic_store(&selftest_slot, b);  /* ownership goes to the reader here */
    pmi_selftest_racy_write(b);       /* ...and this write is a deliberate race */
    atomic_store_explicit(&selftest_written, 1, memory_order_relaxed);
    /* stay alive until the reader has released the block: this thread's exit (mimalloc's thread-done,
       which abandons its pages under the exit lock) would otherwise order the racy write before the
       reader's free in TSan's model, and hide the race whenever the writer exits first */
    while (!atomic_load_explicit(&selftest_released, memory_order_relaxed)) sched_yield();
    return NULL;
}

static void* selftest_reader(void* arg) {
    (void)arg;
    pmi_block_t* b;
    while ((b = atomic_load(&selftest_slot)) == NULL) sched_yield();
    while (!atomic_load_explicit(&selftest_written, memory_order_relaxed)) sched_yield();
    if (strcmp(selftest, "plain") == 0) selftest_plain++;
    h_release(b);
    atomic_store_explicit(&selftest_released, 1, memory_order_relaxed);
    return NULL;
}

static void run_selftest(void) {
    pthread_t w, r;
    pthread_create(&r, NULL, selftest_reader, NULL);
    pthread_create(&w, NULL, selftest_writer, NULL);
    pthread_join(w, NULL);
    pthread_join(r, NULL);
}
#endif

/* -- workers: allocate, hand over, take over, reallocate, look up ----------------------------------- */

/* A heap to allocate from: a slot's (returns its index) or, now and then, the main heap (-1). */
static pmi_heap_t* pick_heap(rng_t* r, int* slot) {
    if (below(r, 10) == 0) { *slot = -1; return main_heap; }
    *slot = (int)below(r, N_HEAPS);
    return heap_use(*slot);
}

static void done_with(int slot) {
    if (slot >= 0) heap_unuse(slot);
}

static void lookups_of_foreign_addresses(pmi_heap_t* h) {
    int local = 0;
    void* c = malloc(64);  /* the C library's heap, not mimalloc */
    if (pmi_heap_of((uintptr_t)&local) != 0 || pmi_usable_size((uintptr_t)&local) != 0) FAIL("a stack address looks like mimalloc's");
    if (c != NULL && (pmi_heap_of((uintptr_t)c) != 0 || pmi_usable_size((uintptr_t)c) != 0)) FAIL("a malloc address looks like mimalloc's");
    if (pmi_heap_of(0) != 0 || pmi_heap_of(1) != 0 || pmi_usable_size(UINTPTR_MAX - 7) != 0) FAIL("a wild address looks like mimalloc's");
    const int c1 = pmi_heap_contains(h, (uintptr_t)c);
    if (c1 != 0 && c1 != PMI_ECLOSED) FAIL("pmi_heap_contains(malloc address) = %d", c1);
    free(c);
    count(C_LOOKUP);
}

static void* worker(void* arg) {
    const int id = (int)(intptr_t)arg;
    thread_name = "worker";
    rng_t r = rng_for(100 + (uint64_t)id);
    pmi_block_t* mine[N_LOCAL] = { 0 };
    while (!stopping()) {
        const unsigned op = below(&r, 100);
        int slot;
        if (op < 40) {                                   /* allocate, and hand over */
            pmi_heap_t* h = pick_heap(&r, &slot);
            if (h == NULL) continue;
            pmi_block_t* b = alloc_block(&r, h, slot_in_arena(slot));
            if (b != NULL && below(&r, 8) == 0) {
                const int c = pmi_heap_contains(h, (uintptr_t)b->data);
                if (c != 1 && c != PMI_ECLOSED) FAIL("pmi_heap_contains(own block) = %d", c);
            }
            done_with(slot);                             /* the block holds its own reference */
            if (b != NULL) park_block(&r, b);
        } else if (op < 55) {                            /* take over a block another thread parked */
            pmi_block_t* b = atomic_exchange(&parked[below(&r, N_PARKED)], NULL);
            if (b != NULL) consume_block(&r, b);
        } else if (op < 65) {                            /* a block kept for a while, then freed or grown */
            const unsigned i = below(&r, N_LOCAL);
            if (mine[i] == NULL) {
                pmi_heap_t* h = pick_heap(&r, &slot);
                if (h == NULL) continue;
                mine[i] = alloc_block(&r, h, slot_in_arena(slot));
                done_with(slot);
            } else {
                check_block(mine[i], "kept block");
                if (mine[i]->size < BIG && below(&r, 2) == 0) mine[i] = realloc_block(&r, mine[i]);
                else { release_block(mine[i]); mine[i] = NULL; }
            }
        } else if (op < 80) {                            /* numpy's path */
            if (below(&r, 2) == 0) {
                pmi_heap_t* h = pick_heap(&r, &slot);
                if (h == NULL) continue;
                data_item_t* d = data_alloc(&r, h);
                done_with(slot);
                if (d != NULL) {
                    data_item_t* other = atomic_exchange(&parked_data[below(&r, N_PARKED_DATA)], d);
                    if (other != NULL) data_consume(&r, other);
                }
            } else {
                data_item_t* d = atomic_exchange(&parked_data[below(&r, N_PARKED_DATA)], NULL);
                if (d != NULL) data_consume(&r, d);
            }
        } else if (op < 86) {                            /* as_default(): pin, allocate, unpin */
            slot = (int)below(&r, N_HEAPS);
            pmi_heap_t* h = heap_use(slot);
            if (h == NULL) continue;
            const int st = pmi_heap_pin(h);
            if (st == PMI_OK) {
                count(C_PIN);
                for (int k = 0; k < 3; k++) {
                    pmi_block_t* b = alloc_block(&r, h, slot_in_arena(slot));
                    if (b != NULL) park_block(&r, b);
                }
                if (pmi_heap_state(h) == PMI_STATE_CLOSED) FAIL("a pinned heap was closed");
                pmi_heap_unpin(h);
            } else if (st != PMI_ECLOSED && st != PMI_EFROZEN) {
                FAIL("pmi_heap_pin returned %d", st);
            }
            heap_unuse(slot);
        } else if (op < 92) {                            /* lookups of addresses that are not blocks */
            pmi_heap_t* h = pick_heap(&r, &slot);
            if (h == NULL) continue;
            lookups_of_foreign_addresses(h);
            done_with(slot);
        } else if (op < 95) {                            /* collection */
            pmi_heap_t* h = pick_heap(&r, &slot);
            if (h == NULL) continue;
            const int st = pmi_heap_collect(h, below(&r, 2) == 0);
            if (st != PMI_OK && st != PMI_ECLOSED && st != PMI_EFROZEN && !(slot < 0 && st == PMI_EFROZEN)) {
                FAIL("pmi_heap_collect returned %d", st);
            }
            done_with(slot);
            if (below(&r, 8) == 0) pmi_collect(below(&r, 2) == 0);
            count(C_COLLECT);
        } else {                                         /* grow a kept block */
            const unsigned i = below(&r, N_LOCAL);
            if (mine[i] != NULL && mine[i]->size < BIG) mine[i] = realloc_block(&r, mine[i]);
        }
    }
    for (int i = 0; i < N_LOCAL; i++) {
        if (mine[i] != NULL) { check_block(mine[i], "kept block"); release_block(mine[i]); }
    }
    return NULL;
}

/* -- short-lived threads: allocate in several heaps, then exit (mimalloc abandons their pages) ------- */

static atomic_long transient_seq;

static void* transient(void* arg) {
    (void)arg;
    thread_name = "transient";
    rng_t r = rng_for(1000 + (uint64_t)atomic_fetch_add(&transient_seq, 1));
    const int ops = 10 + (int)below(&r, 40);
    for (int k = 0; k < ops && !stopping(); k++) {
        int slot;
        pmi_heap_t* h = pick_heap(&r, &slot);
        if (h == NULL) continue;
        pmi_block_t* b = alloc_block(&r, h, slot_in_arena(slot));
        done_with(slot);
        if (b == NULL) continue;
        if (below(&r, 3) == 0) release_block(b);  /* freed by its own thread */
        else park_block(&r, b);                   /* outlives the thread: freed by another one */
    }
    count(C_TRANSIENT);
    return NULL;  /* mimalloc's thread-done runs now, under the glue's exit lock */
}

static void* spawner(void* arg) {
    (void)arg;
    while (!stopping()) {
        pthread_t t[2];
        int started = 0;
        for (int i = 0; i < 2; i++) {
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            if (fresh_stacks) {  /* mimalloc's thread id is the TCB address, which glibc reuses with a cached stack */
                const size_t stack_size = 1u << 20;
                void* stack = malloc(stack_size);  /* deliberately never freed */
                if (stack != NULL) pthread_attr_setstack(&attr, stack, stack_size);
            }
            if (pthread_create(&t[i], &attr, transient, NULL) == 0) started++;
            else { FAIL("pthread_create"); pthread_attr_destroy(&attr); break; }
            pthread_attr_destroy(&attr);
        }
        for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    }
    return NULL;
}

/* -- walkers: freeze, walk, thaw; two of them on the same heap at once ------------------------------ */

static void walk_heap(rng_t* r, pmi_heap_t* h) {
    const bool is_main = pmi_heap_is_main(h);
    const int st = pmi_heap_freeze(h);
    if (st == PMI_ECLOSED && !is_main) { count(C_FREEZE_CLOSED); sleep_ms(1); return; }
    if (st != PMI_OK) { FAIL("pmi_heap_freeze returned %d", st); return; }
    if (pmi_heap_state(h) != PMI_STATE_FROZEN) FAIL("a frozen heap says state %d", pmi_heap_state(h));
    const size_t live = pmi_heap_live_blocks(h);
    const size_t live_bytes = pmi_heap_live_bytes(h);
    const bool visit_blocks = below(r, 4) != 0;
    const uintptr_t id = pmi_heap_id(h);
    pmi_walk_t w;
    const int ws = pmi_heap_walk(h, visit_blocks, &w);
    if (ws != PMI_OK) FAIL("pmi_heap_walk returned %d", ws);
    else {
        if (visit_blocks) {
            /* the main heap also holds mimalloc's own heap structures; a user heap holds only ours */
            if (is_main ? w.block_count < live : w.block_count != live) {
                FAIL("walk of a frozen %s heap found %zu blocks, live count %zu", is_main ? "main" : "user", w.block_count, live);
            }
            for (size_t i = 0; i < w.block_count; i++) {
                const uintptr_t a = w.blocks[i];
                if (w.block_area[i] >= w.area_count) { FAIL("block outside the areas"); break; }
                const pmi_area_t* area = &w.areas[w.block_area[i]];
                if (a < area->address || a >= area->address + area->reserved) { FAIL("walked block outside its area"); break; }
                if (!is_main && pmi_heap_of(a) != id) {
                    FAIL("walked block %p (area %p, block size %zu, full %zu, reserved %zu, used %zu) is in heap %p, not in the walked %s heap %p",
                         (void*)a, (void*)area->address, area->block_size, area->full_block_size, area->reserved, area->used,
                         (void*)pmi_heap_of(a), is_main ? "main" : "user", (void*)id);
                    break;
                }
                if (!is_main && pmi_usable_size(a) == 0) {
                    FAIL("walked block %p (area %p, block size %zu, full %zu, reserved %zu, used %zu) has no usable size",
                         (void*)a, (void*)area->address, area->block_size, area->full_block_size, area->reserved, area->used);
                    break;
                }
            }
            atomic_fetch_add_explicit(&counters[C_WALK_BLOCKS], (long)w.block_count, memory_order_relaxed);
        } else if (live > 0 && w.area_count == 0 && !is_main) {
            FAIL("walk of a heap with %zu live blocks found no area", live);
        }
        pmi_walk_free(&w);
    }
    if (pmi_heap_live_blocks(h) != live || pmi_heap_live_bytes(h) != live_bytes) FAIL("live counts changed while frozen");
    count(is_main ? C_WALK_MAIN : C_WALK);
    pmi_heap_thaw(h);
}

static void* walker(void* arg) {
    rng_t r = rng_for(200 + (uint64_t)(intptr_t)arg);
    thread_name = "walker";
    while (!stopping()) {
        if (below(&r, 8) == 0) walk_heap(&r, main_heap);  /* stops the world: not too often */
        else {
            const int slot = atomic_load_explicit(&walk_target, memory_order_relaxed);
            pmi_heap_t* h = heap_use(slot);
            if (h == NULL) continue;
            walk_heap(&r, h);
            heap_unuse(slot);
        }
        if (below(&r, 2) == 0) sched_yield();
    }
    return NULL;
}

/* -- manager: close (both modes), pin, collect, retire heaps while everyone else works ---------------- */

static void check_close_status(pmi_heap_t* h, int mode, int st) {
    switch (st) {
    case PMI_DESTROYED:
        count(C_CLOSE_DESTROYED);
        if (!pmi_heap_released(h) || pmi_heap_live_blocks(h) != 0) FAIL("PMI_DESTROYED but not released or not empty");
        if (pmi_heap_state(h) != PMI_STATE_CLOSED) FAIL("PMI_DESTROYED but not closed");
        break;
    case PMI_DEFERRED:
        count(C_CLOSE_DEFERRED);
        if (mode != PMI_CLOSE_AUTO) FAIL("PMI_DEFERRED from a strict destroy");
        if (pmi_heap_state(h) != PMI_STATE_CLOSED) FAIL("PMI_DEFERRED but not closed");
        break;
    case PMI_EBUSY: count(C_CLOSE_EBUSY); if (mode != PMI_CLOSE_DESTROY) FAIL("PMI_EBUSY from an auto close"); break;
    case PMI_EFROZEN: count(C_CLOSE_EFROZEN); break;
    case PMI_EPINNED: count(C_CLOSE_EPINNED); break;
    case PMI_ECLOSED: count(C_CLOSE_ECLOSED); break;
    default: FAIL("pmi_heap_close returned %d", st);
    }
}

static void retire(rng_t* r, int slot) {
    pmi_heap_t* h = atomic_exchange(&heaps[slot].handle, NULL);
    if (h == NULL) return;
    while (atomic_load(&heaps[slot].users) != 0) sched_yield();
    if (graveyard_count < GRAVEYARD_MAX && below(r, 2) == 0) {
        pmi_heap_ref(h);  /* checked at the end; the others are freed by their last block */
        graveyard[graveyard_count++] = h;
    }
    pmi_heap_release(h);  /* the Python handle goes: closes the heap if it is open */
    count(C_RETIRE);
    atomic_store(&heaps[slot].handle, new_heap(r, slot));
}

static void* manager(void* arg) {
    (void)arg;
    rng_t r = rng_for(300);
    thread_name = "manager";
    while (!stopping()) {
        atomic_store_explicit(&walk_target, (int)below(&r, N_HEAPS), memory_order_relaxed);
        const int slot = (int)below(&r, N_HEAPS);
        pmi_heap_t* h = heap_use(slot);
        if (h == NULL) continue;
        const unsigned k = below(&r, 100);
        if (k < 25) check_close_status(h, PMI_CLOSE_AUTO, pmi_heap_close(h, PMI_CLOSE_AUTO));
        else if (k < 40) check_close_status(h, PMI_CLOSE_DESTROY, pmi_heap_close(h, PMI_CLOSE_DESTROY));
        else if (k < 55) {
            if (pmi_heap_pin(h) == PMI_OK) {
                const int st = pmi_heap_close(h, below(&r, 2) ? PMI_CLOSE_AUTO : PMI_CLOSE_DESTROY);
                if (st != PMI_EPINNED && st != PMI_EFROZEN) FAIL("closing a pinned heap returned %d", st);
                pmi_heap_unpin(h);
            }
        } else if (k < 65) {
            (void)pmi_heap_collect(h, true);
        }
        if (pmi_heap_main_handle() != main_heap) FAIL("pmi_heap_main_handle changed");
        pmi_heap_release(main_heap);  /* the reference just taken */
        const bool closed = pmi_heap_state(h) == PMI_STATE_CLOSED;
        heap_unuse(slot);
        if ((closed && below(&r, 2) == 0) || below(&r, 12) == 0) retire(&r, slot);
        sleep_ms(1 + below(&r, 4));
    }
    return NULL;
}

/* -- fork from one thread while the others work ----------------------------------------------------- */

/* The child's only thread: use the glue as a fresh Python process would after os.fork(). */
static int child_main(void) {
    atomic_store(&failures, 0);  /* the parent's count, copied */
    rng_t r = rng_for(5000 + (uint64_t)getpid());
    pmi_heap_t* h = pmi_heap_new();
    if (h == NULL) return 10;
    pmi_block_t* bs[16];
    for (int i = 0; i < 16; i++) {
        bs[i] = h_alloc(h, 16 + 1000 * (size_t)i, i % 4 == 0 ? 64 : 0, false);
        if (bs[i] == NULL) return 11;
        fill(bs[i]->data, bs[i]->size);
    }
    for (int i = 0; i < 16; i++) {
        if (!holds(bs[i]->data, bs[i]->size, fill_byte(bs[i]->data))) return 12;
        h_release(bs[i]);
    }
    if (pmi_heap_live_blocks(h) != 0) return 13;
    if (pmi_heap_close(h, PMI_CLOSE_DESTROY) != PMI_DESTROYED) return 14;
    pmi_heap_release(h);
    /* the main heap */
    pmi_block_t* m = h_alloc(main_heap, 100, 0, true);
    if (m != NULL) h_release(m);
    else if (pmi_allocation_failure() != PMI_EFROZEN) return 15;  /* frozen by a walker the child does not have */
    /* an inherited heap (it may be frozen by a walker thread that does not exist in the child) */
    const int slot = (int)below(&r, N_HEAPS);
    pmi_heap_t* g = heap_use(slot);
    if (g != NULL) {
        pmi_block_t* b = h_alloc(g, 64, 0, false);
        if (b != NULL) h_release(b);
        else if (pmi_allocation_failure() == PMI_ENOMEM) return 16;
        const int st = pmi_heap_close(g, PMI_CLOSE_AUTO);
        if (st != PMI_DESTROYED && st != PMI_DEFERRED && st != PMI_ECLOSED && st != PMI_EFROZEN && st != PMI_EPINNED) return 17;
        heap_unuse(slot);
    }
    /* blocks the parent's threads had parked: the child owns its copies */
    for (int i = 0; i < N_PARKED; i += 3) {
        pmi_block_t* b = atomic_exchange(&parked[i], NULL);
        if (b == NULL) continue;
        if (!holds(b->data, b->size, fill_byte(b->data))) return 18;
        h_release(b);
    }
    /* and a walk of the main heap, which stops the world: every bracket count must be back at 0 */
    if (pmi_heap_freeze(main_heap) == PMI_OK) {
        pmi_walk_t w;
        if (pmi_heap_walk(main_heap, true, &w) != PMI_OK) return 19;
        pmi_walk_free(&w);
        pmi_heap_thaw(main_heap);
    }
    return atomic_load(&failures) != 0 ? 20 : 0;
}

static void* forker(void* arg) {
    (void)arg;
    rng_t r = rng_for(400);
    thread_name = "forker";
    while (!stopping()) {
        for (unsigned waited = 0, pause = 50 + below(&r, 150); waited < pause && !stopping(); waited += 10) sleep_ms(10);
        if (stopping()) break;
        const pid_t pid = fork();
        if (pid == 0) _exit(child_main());
        if (pid < 0) { FAIL("fork: %s", strerror(errno)); continue; }
        count(C_FORK);
        int status = 0;
        const double deadline = now_seconds() + CHILD_TIMEOUT_S;
        pid_t got;
        while ((got = waitpid(pid, &status, WNOHANG)) == 0 && now_seconds() < deadline) sleep_ms(5);
        if (got == 0) {
            if (getenv("PMI_GDB_ON_HANG") != NULL) {  /* show where the child is stuck */
                char command[160];
                snprintf(command, sizeof(command), "gdb -q -batch -p %d -ex 'thread apply all bt' </dev/null 2>&1 | grep -v '^\\[' | head -40 >&2", (int)pid);
                if (system(command) != 0) fprintf(stderr, "pmi_glue_threads: gdb failed\n");
            }
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            FAIL("forked child %d hung for %d s (killed)", (int)pid, CHILD_TIMEOUT_S);
        } else if (got < 0) {
            FAIL("waitpid: %s", strerror(errno));
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (WIFEXITED(status)) FAIL("forked child exited with status %d", WEXITSTATUS(status));
            else FAIL("forked child died of signal %d", WTERMSIG(status));
        }
    }
    return NULL;
}

/* -- main ------------------------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(stderr, "usage: pmi_glue_threads [--seconds S] [--seed N] [--forks 0|1] [--selftest glue|block|plain]\n");
    exit(2);
}

static void check_drained(pmi_heap_t* h, const char* what) {
    if (pmi_heap_live_blocks(h) != 0 || pmi_heap_live_bytes(h) != 0) {
        FAIL("%s: %zu blocks / %zu bytes still counted live after everything was freed", what,
             pmi_heap_live_blocks(h), pmi_heap_live_bytes(h));
    }
}

int main(int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--seconds") == 0) run_seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0) base_seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--forks") == 0) forks_enabled = atoi(argv[++i]) != 0;
        else if (strcmp(argv[i], "--freed-lookups") == 0) freed_lookups = atoi(argv[++i]) != 0;
        else if (strcmp(argv[i], "--transients") == 0) transients_enabled = atoi(argv[++i]) != 0;
        else if (strcmp(argv[i], "--walkers") == 0) n_walkers = atoi(argv[++i]) < N_WALKERS ? atoi(argv[i]) : N_WALKERS;
        else if (strcmp(argv[i], "--fresh-stacks") == 0) fresh_stacks = atoi(argv[++i]) != 0;
        else if (strcmp(argv[i], "--arena") == 0) { if (atoi(argv[++i]) == 0) arena_size_factor = 0; }
        else if (strcmp(argv[i], "--selftest") == 0) selftest = argv[++i];
        else usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* The glue calls PyTraceMalloc_Track/Untrack on every block. Without Py_Initialize (tracemalloc not
       tracing), CPython returns -2 after reading one flag: no GIL, no interpreter state. */
    if (PyTraceMalloc_Track(PMI_TRACEMALLOC_DOMAIN, (uintptr_t)&argc, 8) != -2 ||
        PyTraceMalloc_Untrack(PMI_TRACEMALLOC_DOMAIN, (uintptr_t)&argc) != -2) {
        FAIL("PyTraceMalloc_Track/Untrack did not return -2 without an interpreter");
        return 1;
    }
    if (pmi_init() != PMI_OK) { FAIL("pmi_init"); return 1; }
    main_heap = pmi_heap_main_handle();
    if (!pmi_heap_is_main(main_heap) || pmi_heap_close(main_heap, PMI_CLOSE_AUTO) != PMI_EMAIN) FAIL("the main heap");

    if (selftest != NULL) {
#ifdef PMI_TSAN_SELFTEST
        run_selftest();
        printf("pmi_glue_threads: selftest '%s' ran (TSan must have reported a race)\n", selftest);
        return atomic_load(&failures) != 0;
#else
        fprintf(stderr, "pmi_glue_threads: --selftest needs a build with -DPMI_TSAN_SELFTEST\n");
        return 2;
#endif
    }

    rng_t r = rng_for(0);
    const size_t arena_size = arena_size_factor * pmi_arena_granularity();
    if (arena_size != 0 && pmi_arena_reserve(arena_size, false, false, &arena_id) != 0) {
        FAIL("pmi_arena_reserve(%zu)", arena_size);
        arena_id = NULL;
    }
    for (int i = 0; i < N_HEAPS; i++) atomic_store(&heaps[i].handle, new_heap(&r, i));

    pthread_t workers[N_WORKERS], walkers[N_WALKERS], mgr, spw, frk;
    for (int i = 0; i < N_WORKERS; i++) pthread_create(&workers[i], NULL, worker, (void*)(intptr_t)i);
    for (int i = 0; i < n_walkers; i++) pthread_create(&walkers[i], NULL, walker, (void*)(intptr_t)i);
    pthread_create(&mgr, NULL, manager, NULL);
    if (transients_enabled) pthread_create(&spw, NULL, spawner, NULL);
    if (forks_enabled) pthread_create(&frk, NULL, forker, NULL);

    const double start = now_seconds();
    while (now_seconds() - start < run_seconds && atomic_load(&failures) < 20) sleep_ms(50);
    atomic_store(&stop, 1);
    for (int i = 0; i < N_WORKERS; i++) pthread_join(workers[i], NULL);
    for (int i = 0; i < n_walkers; i++) pthread_join(walkers[i], NULL);
    pthread_join(mgr, NULL);
    if (transients_enabled) pthread_join(spw, NULL);
    if (forks_enabled) pthread_join(frk, NULL);

    /* Free everything still parked, then every heap must be empty, and every closed one destroyed. */
    for (int i = 0; i < N_PARKED; i++) {
        pmi_block_t* b = atomic_exchange(&parked[i], NULL);
        if (b != NULL) { check_block(b, "parked block at exit"); release_block(b); }
    }
    for (int i = 0; i < N_PARKED_DATA; i++) {
        data_item_t* d = atomic_exchange(&parked_data[i], NULL);
        if (d != NULL) data_consume(&r, d);
        d = atomic_exchange(&parked_data[i], NULL);  /* data_consume may have parked it again */
        if (d != NULL) data_release(d);
    }
    for (int i = 0; i < N_PARKED_DATA; i++) {
        data_item_t* d = atomic_exchange(&parked_data[i], NULL);
        if (d != NULL) data_release(d);
    }
    for (int i = 0; i < N_HEAPS; i++) {
        pmi_heap_t* h = atomic_exchange(&heaps[i].handle, NULL);
        if (h == NULL) continue;
        check_drained(h, "heap in a slot");
        const int st = pmi_heap_close(h, PMI_CLOSE_DESTROY);
        if (st != PMI_DESTROYED && !(st == PMI_ECLOSED && pmi_heap_released(h))) FAIL("final close returned %d", st);
        pmi_heap_release(h);
    }
    for (size_t i = 0; i < graveyard_count; i++) {
        check_drained(graveyard[i], "retired heap");
        if (!pmi_heap_released(graveyard[i])) FAIL("a retired heap with no live block was never destroyed");
        pmi_heap_unref_public(graveyard[i]);
    }
    check_drained(main_heap, "main heap");
    if (pmi_error_count() != 0) FAIL("mimalloc reported %ld error(s), last errno %d", pmi_error_count(), pmi_error_last());
    pmi_heap_release(main_heap);

    printf("pmi_glue_threads: %.1f s, seed %llu, %zu retired heaps checked\n", now_seconds() - start,
           (unsigned long long)base_seed, graveyard_count);
    for (int i = 0; i < C_COUNT; i++) printf("  %-22s %ld\n", counter_names[i], atomic_load(&counters[i]));
    const long bad = atomic_load(&failures);
    printf("pmi_glue_threads: %s (%ld failure(s))\n", bad == 0 ? "OK" : "FAILED", bad);
    return bad == 0 ? 0 : 1;
}
