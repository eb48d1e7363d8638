/* pymimalloc's heap and block glue. See pmi_heap.h for the ownership model. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>  /* only for PyTraceMalloc_Track/Untrack, which are safe without the GIL */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mimalloc.h>
#include <mimalloc-stats.h>
#include "pmi_heap.h"
#include "pmi_internal.h"

struct pmi_heap_s {
    mi_heap_t*        heap;
    bool              is_main;
    atomic_intptr_t   refs;         /* the Python handle + one per live record */
    atomic_intptr_t   active;       /* calls in flight that use `heap` */
    atomic_int        state;        /* PMI_STATE_* */
    atomic_size_t     live_blocks;
    atomic_size_t     live_bytes;
    int               freeze_depth;  /* guarded by pmi_freeze_lock */
    atomic_intptr_t   pins;          /* as_default() and numpy_allocator() blocks using this heap */
    _Atomic(pmi_block_t*) deferred;  /* records released while frozen (a lock-free stack) */
};

/* Freezing and thawing are rare; one lock for all heaps keeps nested freezes simple. */
static pthread_mutex_t pmi_freeze_lock = PTHREAD_MUTEX_INITIALIZER;

/* Our own bookkeeping (heap wrappers and block records) lives in a private heap, so it never shows up
   in a user's heap, its counters or its visits. */
static mi_heap_t* pmi_meta_heap;
static pmi_heap_t* pmi_main_wrapper;

/* mimalloc's error reports (it prints them only with show_errors): counted, so tests and checked CI
   builds can fail on any of them. Serious corruption (EFAULT) still aborts in debug and secure builds,
   as mimalloc's default handler does. */
static atomic_long pmi_errors;
static atomic_int pmi_last_error;

static void pmi_on_error(int err, void* arg) {
    (void)arg;
    atomic_fetch_add(&pmi_errors, 1);
    atomic_store(&pmi_last_error, err);
#if (MI_DEBUG > 0) || (MI_SECURE > 0)
    if (err == EFAULT) abort();
#endif
}

long pmi_error_count(void) { return atomic_load(&pmi_errors); }
int pmi_error_last(void) { return atomic_load(&pmi_last_error); }

int pmi_init(void) {
    if (pmi_meta_heap != NULL) return PMI_OK;
    mi_register_error(&pmi_on_error, NULL);
    pmi_meta_heap = mi_heap_new();
    if (pmi_meta_heap == NULL) return PMI_ENOMEM;
    pmi_main_wrapper = (pmi_heap_t*)mi_heap_zalloc(pmi_meta_heap, sizeof(pmi_heap_t));
    if (pmi_main_wrapper == NULL) return PMI_ENOMEM;
    pmi_main_wrapper->heap = mi_heap_main();
    pmi_main_wrapper->is_main = true;
    atomic_store(&pmi_main_wrapper->refs, 1);  /* the module's own reference: never freed */
    return PMI_OK;
}

static void pmi_heap_unref(pmi_heap_t* h) {
    if (atomic_fetch_sub(&h->refs, 1) == 1) mi_free(h);
}

/* Enter/leave bracket every use of h->heap. Together with the close protocol below (set CLOSING, then
   wait for active == 0) this is a Dekker handshake on sequentially consistent atomics: either the
   closer sees our increment and waits, or we see CLOSING and back off. */
static inline bool pmi_enter(pmi_heap_t* h) {
    atomic_fetch_add(&h->active, 1);
    if (atomic_load(&h->state) == PMI_STATE_OPEN) return true;
    atomic_fetch_sub(&h->active, 1);
    return false;
}

static int pmi_refusal(pmi_heap_t* h) {
    const int state = atomic_load(&h->state);
    return (state == PMI_STATE_FROZEN ? PMI_EFROZEN : state == PMI_STATE_OPEN ? PMI_OK : PMI_ECLOSED);
}

/* Why this thread's last allocation failed: read right after the failure, whatever the heap did since. */
static __thread int pmi_last_failure;

static inline bool pmi_enter_alloc(pmi_heap_t* h) {
    if (pmi_enter(h)) return true;
    pmi_last_failure = pmi_refusal(h);
    if (pmi_last_failure == PMI_OK) pmi_last_failure = PMI_EBUSY;  /* closing right now */
    return false;
}

int pmi_allocation_failure(void) { return pmi_last_failure; }

static inline void pmi_leave(pmi_heap_t* h) {
    atomic_fetch_sub(&h->active, 1);
}

pmi_heap_t* pmi_heap_new(void) {
    pmi_heap_t* h = (pmi_heap_t*)mi_heap_zalloc(pmi_meta_heap, sizeof(pmi_heap_t));
    if (h == NULL) return NULL;
    h->heap = mi_heap_new();
    if (h->heap == NULL) { mi_free(h); return NULL; }
    atomic_store(&h->refs, 1);
    return h;
}

pmi_heap_t* pmi_heap_main_handle(void) {
    atomic_fetch_add(&pmi_main_wrapper->refs, 1);
    return pmi_main_wrapper;
}

int pmi_heap_close(pmi_heap_t* h, int mode) {
    if (h->is_main) return PMI_EMAIN;
    int expected = PMI_STATE_OPEN;
    while (!atomic_compare_exchange_strong(&h->state, &expected, PMI_STATE_CLOSING)) {
        if (expected != PMI_STATE_CLOSING) return (expected == PMI_STATE_CLOSED ? PMI_ECLOSED : PMI_EFROZEN);
        sched_yield();  /* another thread is closing (or failing a strict destroy): see how it ends */
        expected = PMI_STATE_OPEN;
    }
    while (atomic_load(&h->active) != 0) sched_yield();
    /* From here on nothing can allocate; the live count can only go down. */
    if (atomic_load(&h->pins) != 0) {  /* closing would leave a thread default or numpy handler dangling */
        atomic_store(&h->state, PMI_STATE_OPEN);
        return PMI_EPINNED;
    }
    const size_t live = atomic_load(&h->live_blocks);
    if (mode == PMI_CLOSE_DESTROY && live != 0) {
        atomic_store(&h->state, PMI_STATE_OPEN);
        return PMI_EBUSY;
    }
    if (mode == PMI_CLOSE_AUTO) mode = (live == 0 ? PMI_CLOSE_DESTROY : PMI_CLOSE_DELETE);
    if (mode == PMI_CLOSE_DESTROY) mi_heap_destroy(h->heap);
    else mi_heap_delete(h->heap);
    atomic_store(&h->state, PMI_STATE_CLOSED);
    return (mode == PMI_CLOSE_DESTROY ? PMI_DESTROYED : PMI_DELETED);
}

void pmi_heap_release(pmi_heap_t* h) {
    if (!h->is_main && atomic_load(&h->state) == PMI_STATE_OPEN) {
        (void)pmi_heap_close(h, PMI_CLOSE_AUTO);
    }
    pmi_heap_unref(h);
}

int pmi_heap_state(pmi_heap_t* h) { return atomic_load(&h->state); }
int pmi_heap_is_main(pmi_heap_t* h) { return h->is_main; }
uintptr_t pmi_heap_id(pmi_heap_t* h) { return (uintptr_t)h->heap; }
size_t pmi_heap_live_blocks(pmi_heap_t* h) { return atomic_load_explicit(&h->live_blocks, memory_order_relaxed); }
size_t pmi_heap_live_bytes(pmi_heap_t* h) { return atomic_load_explicit(&h->live_bytes, memory_order_relaxed); }

int pmi_heap_collect(pmi_heap_t* h, bool force) {
    if (!pmi_enter(h)) return pmi_refusal(h);
    mi_heap_collect(h->heap, force);
    pmi_leave(h);
    return PMI_OK;
}

int pmi_heap_contains(pmi_heap_t* h, uintptr_t address) {
    if (atomic_load(&h->state) == PMI_STATE_FROZEN) {  /* reading the page map is safe while frozen */
        return mi_heap_contains(h->heap, (const void*)address) ? 1 : 0;
    }
    if (!pmi_enter(h)) return pmi_refusal(h);
    const int found = mi_heap_contains(h->heap, (const void*)address) ? 1 : 0;
    pmi_leave(h);
    return found;
}

/* tracemalloc sees every allocation made through pymimalloc under a domain of its own. When tracemalloc
   is off these are a load and a branch inside CPython. */
static inline void pmi_track(void* p, size_t size) {
    (void)PyTraceMalloc_Track(PMI_TRACEMALLOC_DOMAIN, (uintptr_t)p, size);
}
static inline void pmi_untrack(void* p) {
    (void)PyTraceMalloc_Untrack(PMI_TRACEMALLOC_DOMAIN, (uintptr_t)p);
}

static inline void pmi_count_alloc(pmi_heap_t* h, size_t size) {
    atomic_fetch_add_explicit(&h->live_blocks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->live_bytes, size, memory_order_relaxed);
}

static inline void pmi_count_free(pmi_heap_t* h, size_t size) {
    atomic_fetch_sub_explicit(&h->live_bytes, size, memory_order_relaxed);
    /* release: a closer that reads live_blocks == 0 also sees the block's mi_free as done */
    atomic_fetch_sub_explicit(&h->live_blocks, 1, memory_order_release);
}

static pmi_block_t* pmi_record_new(pmi_heap_t* h, void* data, size_t size) {
    pmi_block_t* b = (pmi_block_t*)mi_heap_malloc_small(pmi_meta_heap, sizeof(pmi_block_t));
    if (b == NULL) return NULL;
    b->data = data;
    b->size = size;
    b->owner = h;
    atomic_fetch_add(&h->refs, 1);
    return b;
}

pmi_block_t* pmi_block_alloc(pmi_heap_t* h, size_t size, size_t alignment, bool zero) {
    if (!pmi_enter_alloc(h)) return NULL;
    pmi_last_failure = PMI_ENOMEM;  /* unless we succeed below */
    void* p;
    if (alignment == 0) p = (zero ? mi_heap_zalloc(h->heap, size) : mi_heap_malloc(h->heap, size));
    else p = (zero ? mi_heap_zalloc_aligned(h->heap, size, alignment) : mi_heap_malloc_aligned(h->heap, size, alignment));
    pmi_block_t* b = NULL;
    if (p != NULL) {
        b = pmi_record_new(h, p, size);
        if (b == NULL) mi_free(p);
        else { pmi_count_alloc(h, size); pmi_track(p, size); }
    }
    pmi_leave(h);
    return b;
}

pmi_block_t* pmi_block_realloc(pmi_block_t* old, size_t size) {
    pmi_heap_t* h = old->owner;
    if (old->data == NULL) { pmi_last_failure = PMI_EBUSY; return NULL; }
    if (!pmi_enter_alloc(h)) return NULL;
    pmi_last_failure = PMI_ENOMEM;
    pmi_block_t* b = pmi_record_new(h, NULL, size);
    if (b != NULL) {
        void* p = mi_heap_realloc(h->heap, old->data, size);
        if (p == NULL) {
            b->data = NULL;
            pmi_block_release(b);  /* frees the record only; the old block is untouched */
            b = NULL;
        }
        else {
            pmi_untrack(old->data);
            pmi_track(p, size);
            b->data = p;
            old->data = NULL;
            atomic_fetch_add_explicit(&h->live_bytes, size, memory_order_relaxed);
            atomic_fetch_sub_explicit(&h->live_bytes, old->size, memory_order_relaxed);
        }
    }
    pmi_leave(h);
    return b;
}

static void pmi_release_deferred(pmi_heap_t* h);

static void pmi_defer(pmi_heap_t* h, pmi_block_t* b) {
    pmi_block_t* head = atomic_load(&h->deferred);
    do { b->next_deferred = head; } while (!atomic_compare_exchange_weak(&h->deferred, &head, b));
    /* If the heap thawed meanwhile, nobody else will look at the list again: drain it. */
    if (atomic_load(&h->state) != PMI_STATE_FROZEN) pmi_release_deferred(h);
}

/* Free `p` (counted as `size` bytes) unless the heap is frozen; false if the caller must defer it. */
static bool pmi_free_now(pmi_heap_t* h, void* p, size_t size) {
    atomic_fetch_add(&h->active, 1);
    if (atomic_load(&h->state) == PMI_STATE_FROZEN) {  /* a walk may be reading p's page */
        atomic_fetch_sub(&h->active, 1);
        return false;
    }
    pmi_untrack(p);
    mi_free(p);
    pmi_count_free(h, size);
    atomic_fetch_sub(&h->active, 1);
    return true;
}

void pmi_block_release(pmi_block_t* b) {
    pmi_heap_t* h = b->owner;
    if (b->data != NULL && !pmi_free_now(h, b->data, b->size)) {
        pmi_defer(h, b);
        return;
    }
    mi_free(b);
    pmi_heap_unref(h);
}

/* -- raw data for numpy (NEP 49); counted by usable size, since numpy's realloc gives no old size -- */

void* pmi_data_alloc(pmi_heap_t* h, size_t size, bool zero) {
    if (!pmi_enter(h)) return NULL;  /* closed or frozen: numpy reports MemoryError */
    void* p = (zero ? mi_heap_zalloc(h->heap, size) : mi_heap_malloc(h->heap, size));
    if (p != NULL) {
        const size_t usable = mi_usable_size(p);
        pmi_count_alloc(h, usable);
        pmi_track(p, usable);
    }
    pmi_leave(h);
    return p;
}

void* pmi_data_realloc(pmi_heap_t* h, void* p, size_t size) {
    if (p == NULL) return pmi_data_alloc(h, size, false);
    mi_heap_t* target;
    const bool entered = pmi_enter(h);
    if (entered) target = h->heap;
    else if (atomic_load(&h->state) == PMI_STATE_CLOSED) target = mi_heap_main();  /* outlived its heap */
    else return NULL;  /* frozen */
    const size_t old_usable = mi_usable_size(p);
    void* q = mi_heap_realloc(target, p, size);
    if (q != NULL) {
        const size_t usable = mi_usable_size(q);
        pmi_untrack(p);
        pmi_track(q, usable);
        atomic_fetch_add_explicit(&h->live_bytes, usable, memory_order_relaxed);
        atomic_fetch_sub_explicit(&h->live_bytes, old_usable, memory_order_relaxed);
    }
    if (entered) pmi_leave(h);
    return q;
}

void pmi_data_free(pmi_heap_t* h, void* p) {
    if (p == NULL) return;
    const size_t usable = mi_usable_size(p);
    if (pmi_free_now(h, p, usable)) return;
    pmi_block_t* b = pmi_record_new(h, p, usable);  /* frozen: defer it like a block */
    if (b != NULL) pmi_defer(h, b);
    /* else: out of memory even for 32 bytes; leaking the block is the only safe choice */
}

void pmi_heap_ref(pmi_heap_t* h) { atomic_fetch_add(&h->refs, 1); }
void pmi_heap_unref_public(pmi_heap_t* h) { pmi_heap_unref(h); }

static void pmi_release_deferred(pmi_heap_t* h) {
    pmi_block_t* b = atomic_exchange(&h->deferred, NULL);
    while (b != NULL) {
        pmi_block_t* next = b->next_deferred;
        pmi_block_release(b);  /* re-checks the state: defers again if a new freeze began */
        b = next;
    }
}

int pmi_heap_freeze(pmi_heap_t* h) {
    int status = PMI_OK;
    pthread_mutex_lock(&pmi_freeze_lock);
    if (h->freeze_depth > 0) {
        h->freeze_depth++;
    }
    else {
        int expected = PMI_STATE_OPEN;
        while (!atomic_compare_exchange_strong(&h->state, &expected, PMI_STATE_FROZEN)) {
            if (expected != PMI_STATE_CLOSING) break;
            sched_yield();  /* a close in another thread: wait for its outcome */
            expected = PMI_STATE_OPEN;
        }
        if (expected == PMI_STATE_OPEN) {
            h->freeze_depth = 1;
            while (atomic_load(&h->active) != 0) sched_yield();
        }
        else {
            status = PMI_ECLOSED;
        }
    }
    pthread_mutex_unlock(&pmi_freeze_lock);
    return status;
}

void pmi_heap_thaw(pmi_heap_t* h) {
    bool thawed = false;
    pthread_mutex_lock(&pmi_freeze_lock);
    if (h->freeze_depth > 0 && --h->freeze_depth == 0) {
        atomic_store(&h->state, PMI_STATE_OPEN);
        thawed = true;
    }
    pthread_mutex_unlock(&pmi_freeze_lock);
    if (thawed) pmi_release_deferred(h);
}

/* -- walking ------------------------------------------------------------------------------------- */

static bool pmi_grow(void** array, size_t* capacity, size_t count, size_t item) {
    if (count < *capacity) return true;
    size_t wanted = (*capacity == 0 ? 64 : 2 * *capacity);
    void* bigger = mi_heap_realloc(pmi_meta_heap, *array, wanted * item);
    if (bigger == NULL) return false;
    *array = bigger;
    *capacity = wanted;
    return true;
}

typedef struct pmi_walk_state_s {
    pmi_walk_t* walk;
    size_t area_capacity, block_capacity, area_capacity2;
} pmi_walk_state_t;

static bool pmi_walk_visitor(const mi_heap_t* heap, const mi_heap_area_t* area, void* block, size_t block_size, void* arg) {
    (void)heap; (void)block_size;
    pmi_walk_state_t* st = (pmi_walk_state_t*)arg;
    pmi_walk_t* w = st->walk;
    if (block == NULL) {
        if (!pmi_grow((void**)&w->areas, &st->area_capacity, w->area_count, sizeof(pmi_area_t))) goto oom;
        pmi_area_t* a = &w->areas[w->area_count++];
        a->address = (uintptr_t)area->blocks;
        a->reserved = area->reserved;
        a->committed = area->committed;
        a->used = area->used;
        a->block_size = area->block_size;
        a->full_block_size = area->full_block_size;
        return true;
    }
    if (!pmi_grow((void**)&w->blocks, &st->block_capacity, w->block_count, sizeof(uintptr_t))) goto oom;
    if (!pmi_grow((void**)&w->block_area, &st->area_capacity2, w->block_count, sizeof(size_t))) goto oom;
    w->blocks[w->block_count] = (uintptr_t)block;
    w->block_area[w->block_count] = w->area_count - 1;
    w->block_count++;
    return true;
oom:
    w->failed = PMI_ENOMEM;
    return false;
}

int pmi_heap_walk(pmi_heap_t* h, bool visit_blocks, pmi_walk_t* walk) {
    memset(walk, 0, sizeof(*walk));
    if (atomic_load(&h->state) != PMI_STATE_FROZEN) return PMI_EBUSY;
    pmi_walk_state_t st = { walk, 0, 0, 0 };
    mi_heap_visit_blocks(h->heap, visit_blocks, &pmi_walk_visitor, &st);
    return walk->failed;
}

void pmi_walk_free(pmi_walk_t* walk) {
    mi_free(walk->areas);
    mi_free(walk->blocks);
    mi_free(walk->block_area);
    memset(walk, 0, sizeof(*walk));
}

/* for the other glue files (declared in pmi_internal.h) */
void* pmi_meta_realloc(void* p, size_t size) { return mi_heap_realloc(pmi_meta_heap, p, size); }
bool pmi_heap_enter(pmi_heap_t* h) { return pmi_enter(h); }
void pmi_heap_leave(pmi_heap_t* h) { pmi_leave(h); }
mi_heap_t* pmi_heap_raw(pmi_heap_t* h) { return h->heap; }

/* -- arenas and thread defaults -------------------------------------------------------------------- */

pmi_heap_t* pmi_heap_new_in_arena(void* arena_id) {
    pmi_heap_t* h = (pmi_heap_t*)mi_heap_zalloc(pmi_meta_heap, sizeof(pmi_heap_t));
    if (h == NULL) return NULL;
    h->heap = mi_heap_new_in_arena((mi_arena_id_t)arena_id);
    if (h->heap == NULL) { mi_free(h); return NULL; }
    atomic_store(&h->refs, 1);
    return h;
}

int pmi_heap_pin(pmi_heap_t* h) {
    if (!pmi_enter(h)) return pmi_refusal(h);
    atomic_fetch_add(&h->pins, 1);
    pmi_leave(h);
    return PMI_OK;
}

void pmi_heap_unpin(pmi_heap_t* h) { atomic_fetch_sub(&h->pins, 1); }

int pmi_heap_push_default(pmi_heap_t* h, void** previous) {
    if (!pmi_enter(h)) return pmi_refusal(h);
    mi_theap_t* theap = mi_heap_theap(h->heap);
    if (theap == NULL) { pmi_leave(h); return PMI_ENOMEM; }
    atomic_fetch_add(&h->pins, 1);
    *previous = mi_theap_set_default(theap);
    pmi_leave(h);
    return PMI_OK;
}

void pmi_heap_pop_default(pmi_heap_t* h, void* previous) {
    mi_theap_set_default((mi_theap_t*)previous);
    atomic_fetch_sub(&h->pins, 1);
}

uintptr_t pmi_heap_of(uintptr_t address) {
    return (uintptr_t)mi_heap_of((const void*)address);
}

size_t pmi_usable_size(uintptr_t address) {
    if (mi_heap_of((const void*)address) == NULL) return 0;
    return mi_usable_size((const void*)address);
}
