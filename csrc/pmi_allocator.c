/* mimalloc serving CPython's allocator domains at run time. See pmi_allocator.h.
 *
 * CPython lets a running interpreter change an allocator domain only with a hook: a new allocator that
 * hands what it does not own to the previous one (PyMem_SetAllocator). So for each domain:
 *   - new allocations come from one mimalloc heap of their own (pmi_python_heap, never closed or walked
 *     by pymimalloc), rounded up to 16 bytes: CPython promises 16-byte alignment, and mimalloc gives it
 *     to every block of 16 bytes or more (its 8-byte size class is the only one that is not); a
 *     zero-byte request is a distinct 16-byte block. Blocks above PMI_TO_PREVIOUS (512 KiB) are the previous
 *     allocator's, as pymalloc leaves them to the C library, which grows them without copies (see there);
 *   - free and realloc look the pointer up in mimalloc's page map once (pmi_page_of, the lookup mi_free
 *     itself does; pmi_page_of_committed, without its commit test, where mimalloc committed the page map
 *     whole at start, as on Linux by default): a block on a mimalloc page goes to mimalloc, through that page
 *     (pmi_page_free), and anything else (allocated before the hook, or while the domain was not routed)
 *     goes to the previous allocator, which owns it;
 *   - the hook stays for the life of the process. Unrouting (pymimalloc.uninstall()) only sends new
 *     allocations back to the previous allocator: mimalloc's blocks are still freed by the hook.
 * Each domain has its own functions, so no call depends on the `ctx` pointer: a thread that reads
 * CPython's allocator struct while it is being written (the RAW domain is called without the GIL) gets a
 * working function whatever half it sees.
 *
 * Python objects in a chosen heap (Heap.python_objects()): a context (thread or asyncio task) may name a
 * pymimalloc heap for its new MEM and OBJ blocks (a HeapScope in a ContextVar, pmi_python.c; the scope holds
 * a counted reference to the heap). They go through the same glue as numpy's
 * array data (pmi_data_alloc/realloc/free: bracketed, counted in the heap by usable size, deferred while a
 * walk holds the heap frozen). A heap that refuses (frozen by a walk, or closed) is passed over for
 * Python's own heap: an allocation never fails for that. Frees find the heap of a block from its page
 * (page->heap, read only once some heap ever held Python objects: until then every mimalloc block the hook
 * is handed is Python's heap's), and the pymimalloc heap from a small table of the heaps that ever held
 * Python objects; a heap leaves the table just before it is destroyed, which happens only once nothing in
 * it is alive.
 *
 * Why Python's heap is a mimalloc heap of its own, not the thread's default theap (mi_malloc): allocating
 * from the default theap would save the check that maps pmi_python_heap to this thread's theap (mimalloc's
 * cached theap: load its heap, compare, branch; about 4 of the ~30 instructions of the hook's malloc, by the
 * disassembly). But every Python object would then live in mimalloc's main heap: pymimalloc's walks of the
 * main heap (visit, snapshot) would report all of them, heap_of() would name the main heap for each, and
 * since MEM and OBJ calls take no bracket, such a walk (which stops the world through the brackets) would
 * race with every other thread's Python allocations, unless each call took the world bracket: an atomic
 * read-modify-write per call, dearer than the check it saves. So the heap stays separate, and the check is
 * inlined (pmi_fast_malloc in pmi_mimalloc.c).
 *
 * Fork and walks: the MEM and OBJ domains are called with the GIL held, so while os.fork() runs (the
 * forking thread holds the GIL) no other thread is inside them. The RAW domain is not: its calls into
 * mimalloc are bracketed (pmi_world_enter), so a fork waits for them, as it does for Blocks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <mimalloc.h>
#include "pmi_heap.h"
#include "pmi_internal.h"
#include "pmi_allocator.h"

#define PMI_MIN_BLOCK 16

static mi_heap_t* pmi_python_heap;
static PyMemAllocatorEx pmi_previous[3];  /* indexed by PyMemAllocatorDomain; written once, before the hook */
static atomic_int pmi_hooked;             /* PMI_DOMAIN_* bits */
static atomic_int pmi_routed;

static inline size_t pmi_at_least(size_t size) { return size < PMI_MIN_BLOCK ? PMI_MIN_BLOCK : size; }

/* -- the heaps that hold Python objects (Heap.python_objects()) ------------------------------------ */

#define PMI_TARGETS 1024
static struct {
    _Atomic(mi_heap_t*)  raw;       /* NULL: a free entry */
    _Atomic(pmi_heap_t*) wrapper;
} pmi_targets[PMI_TARGETS];
/* Entries in use are below this. Never lowered, and above 0 before any heap gets its first Python object
   (pmi_target_remember runs before a scope holds its heap): while it is 0, frees skip page->heap and the
   table altogether (pmi_maybe_target), so it means "some heap ever held Python objects", not "is active". */
static atomic_int pmi_targets_high;
static atomic_int pmi_objects_held;      /* python_objects() scopes held anywhere: while 0, allocations look no further */
/* For each domain (indexed by PyMemAllocatorDomain), the heap its malloc's common case serves: Python's heap while
   the domain is routed and, for MEM and OBJ, no python_objects() scope is held anywhere; NULL otherwise. One
   load gives both the decision and the heap that mimalloc's fast path compares with its cached theap's (NULL
   must not reach that compare: a theap not yet set up says NULL). The hook's malloc is a leaf function down to
   mimalloc's fast path. Written with the GIL held (pmi_fast_update), after every change of pmi_routed or
   pmi_objects_held. */
static _Atomic(mi_heap_t*) pmi_fast_heap[3];
static void pmi_fast_update(void) {
    const int held = atomic_load(&pmi_objects_held) != 0 ? (PMI_DOMAIN_MEM | PMI_DOMAIN_OBJ) : 0;
    const int fast = atomic_load(&pmi_routed) & ~held;
    atomic_store(&pmi_fast_heap[PYMEM_DOMAIN_RAW], (fast & PMI_DOMAIN_RAW) ? pmi_python_heap : NULL);
    atomic_store(&pmi_fast_heap[PYMEM_DOMAIN_MEM], (fast & PMI_DOMAIN_MEM) ? pmi_python_heap : NULL);
    atomic_store(&pmi_fast_heap[PYMEM_DOMAIN_OBJ], (fast & PMI_DOMAIN_OBJ) ? pmi_python_heap : NULL);
}

#if PY_VERSION_HEX >= 0x030D0000
#define PMI_TSTATE() PyThreadState_GetUnchecked()
#else
#define PMI_TSTATE() _PyThreadState_UncheckedGet()
#endif

/* The heap of the innermost python_objects() block held in the current context (pmi_python.c keeps the
   tuple of them in a ContextVar). Called with the GIL held (MEM and OBJ domains). PyContextVar_Get neither
   allocates nor touches the error indicator when it finds the value, which it caches per thread state. */
static pmi_heap_t* pmi_context_target(void) {
    PyThreadState* const ts = PMI_TSTATE();
    if (ts == NULL || pmi_objects_var == NULL) return NULL;  /* a thread state being torn down */
    /* A sub-interpreter's objects are never routed: python_objects() blocks are the main interpreter's, and up
       to 3.12 a ContextVar's cached value may answer for another interpreter's thread state of the same id. */
    if (PyThreadState_GetInterpreter(ts) != PyInterpreterState_Main()) return NULL;
    PyObject* stack = NULL;
    if (PyContextVar_Get(pmi_objects_var, NULL, &stack) < 0 || stack == NULL) return NULL;
    pmi_heap_t* target = NULL;
    for (Py_ssize_t i = PyTuple_Check(stack) ? PyTuple_GET_SIZE(stack) - 1 : -1; i >= 0 && target == NULL; i--) {
        const pmi_ScopeObject* scope = pmi_entry_held(PyTuple_GET_ITEM(stack, i), PMI_SCOPE_OBJECTS);
        if (scope != NULL) target = scope->handle;
    }
    Py_DECREF(stack);  /* the context still holds it */
    return target;
}

/* What pmi_context_target last found in this thread (pmi_thread.objects_*), and what it depended on: the thread state, its current
   context and that context's version (CPython bumps context_ver whenever a ContextVar is set or a context
   entered or left in the thread), and pmi_objects_epoch, bumped whenever a python_objects() block starts or
   stops holding its heap (it may stop from another thread, or in a dealloc). While all four are unchanged,
   the answer is too: a hit costs a few compares instead of a ContextVar lookup per allocation. */
static atomic_uint_fast64_t pmi_objects_epoch;

void pmi_objects_changed(void) { atomic_fetch_add_explicit(&pmi_objects_epoch, 1, memory_order_release); }

static __attribute__((noinline)) pmi_heap_t* pmi_context_target_refresh(pmi_thread_t* me, PyThreadState* ts, uint64_t epoch) {
    PyObject* const context = ts->context;
    const uint64_t version = ts->context_ver;
    pmi_heap_t* const target = pmi_context_target();
    me->objects_tstate = ts;
    me->objects_context = context;
    me->objects_version = version;
    me->objects_epoch = epoch;
    me->objects_target = target;
    return target;
}

/* What pmi_thread_target would answer from this thread's cache alone (NULL for a thread state being torn down), or
   PMI_TARGET_UNKNOWN where the cache does not hold: the hook's common case asks this first */
#define PMI_TARGET_UNKNOWN ((pmi_heap_t*)1)
static inline pmi_heap_t* pmi_thread_target_cached(pmi_thread_t* me) {
    PyThreadState* const ts = PMI_TSTATE();
    if (ts == NULL) return NULL;
    const uint64_t epoch = atomic_load_explicit(&pmi_objects_epoch, memory_order_acquire);
    if (me->objects_tstate == ts && me->objects_context == ts->context
        && me->objects_version == ts->context_ver && me->objects_epoch == epoch) {
        return me->objects_target;
    }
    return PMI_TARGET_UNKNOWN;
}
/* The heap of this thread's python_objects() block, if any; `me` is &pmi_thread (found once by the caller, and
   passed on to the glue's allocation). Only once some block holds a heap somewhere (pmi_objects_held). */
static inline pmi_heap_t* pmi_thread_target(pmi_thread_t* me) {
    pmi_heap_t* const cached = pmi_thread_target_cached(me);
    if (cached != PMI_TARGET_UNKNOWN) return cached;
    return pmi_context_target_refresh(me, PMI_TSTATE(), atomic_load_explicit(&pmi_objects_epoch, memory_order_acquire));
}
static inline bool pmi_objects_anywhere(void) {
    return atomic_load_explicit(&pmi_objects_held, memory_order_relaxed) != 0;
}

/* The pymimalloc heap whose mimalloc heap is `raw`, if it ever held Python objects. Entries are written
   with the GIL held and read by frees of blocks still alive in them, so the entry is there. */
static pmi_heap_t* pmi_target_of(const mi_heap_t* raw) {
    const int high = atomic_load_explicit(&pmi_targets_high, memory_order_acquire);
    for (int i = 0; i < high; i++) {
        if (atomic_load_explicit(&pmi_targets[i].raw, memory_order_acquire) == raw) {
            return atomic_load_explicit(&pmi_targets[i].wrapper, memory_order_relaxed);
        }
    }
    return NULL;
}

/* Bumped whenever an entry leaves the table (before its heap is destroyed, under the world lock that also
   serialises creating a heap that may reuse the address): a thread's cached owner (pmi_thread.owner_*) holds only
   while the generation it was found in is still current. It starts at 1, so a thread's cache, zero until its first
   such free, never holds. */
static atomic_uint_fast64_t pmi_targets_generation = 1;

/* pmi_target_of for a free, through this thread's cache of the last answer: a free of a chosen heap's object
   costs a few compares rather than a scan of the table. `me` is &pmi_thread. */
static __attribute__((noinline)) pmi_heap_t* pmi_target_of_refresh(pmi_thread_t* me, const mi_heap_t* raw, uint64_t generation) {
    pmi_heap_t* const h = pmi_target_of(raw);
    if (h != NULL) {
        me->owner_raw = raw;
        me->owner_wrapper = h;
        me->owner_generation = generation;
    }
    return h;
}

/* With the GIL held. false if the table is full. */
static bool pmi_target_remember(pmi_heap_t* h) {
    mi_heap_t* raw = pmi_heap_raw(h);
    if (pmi_target_of(raw) != NULL) return true;
    const int high = atomic_load(&pmi_targets_high);
    int slot = 0;
    while (slot < high && atomic_load(&pmi_targets[slot].raw) != NULL) slot++;
    if (slot == PMI_TARGETS) return false;
    atomic_store_explicit(&pmi_targets[slot].wrapper, h, memory_order_relaxed);
    atomic_store_explicit(&pmi_targets[slot].raw, raw, memory_order_release);
    if (slot == high) atomic_store_explicit(&pmi_targets_high, high + 1, memory_order_release);
    return true;
}

static void pmi_allocator_forget(mi_heap_t* raw) {
    const int high = atomic_load(&pmi_targets_high);
    for (int i = 0; i < high; i++) {
        mi_heap_t* expected = raw;
        (void)atomic_compare_exchange_strong(&pmi_targets[i].raw, &expected, NULL);
    }
    atomic_fetch_add_explicit(&pmi_targets_generation, 1, memory_order_release);
}

/* -- the hook's allocations -------------------------------------------------------------------------- */

static inline void* pmi_mi_malloc(size_t size) { return pmi_fast_malloc(pmi_python_heap, pmi_at_least(size)); }

static inline void* pmi_mi_calloc(size_t nelem, size_t elsize) {
    size_t total;
    if (__builtin_mul_overflow(nelem, elsize, &total)) return NULL;
    return pmi_heap_zalloc_slow(pmi_python_heap, pmi_at_least(total));
}

/* Python's heap grows a block by moving it whenever it outgrows its size class, and CPython grows lists,
   bytearrays and string builders by an eighth to a quarter at a time: a list of a million items was copied
   about 9 times over its final size, where the C library's realloc extends in place or remaps. So a block
   of PMI_GROW_ROOM bytes or more that must move to grow gets half as much again: the next few growths stay
   in place (mimalloc keeps a block whose new size fits its usable size, down to half of it). Smaller blocks
   move cheaply and are many, so they get no room. Measured with benchmarks/instructions.py --reps 3, one and a
   half times at every size against twice from 256 KiB: 711 -> 456 instructions per realloc (the copies:
   valgrind counts a byte per instruction of glibc's rep movsb), the workload 1.032 -> 1.023x pymalloc's
   instructions. Untouched room costs no RSS.
   Blocks above PMI_TO_PREVIOUS bytes are the previous allocator's (pymalloc hands them to the C library, whose
   realloc remaps such blocks without copying, and whose free unmaps them): a malloc or calloc of more, and a
   block that must move to grow beyond it, go there. mimalloc cannot grow a block in place: a growing buffer of
   96 MiB was copied each time it moved (9 blocks of the workload above copied 6.7 million bytes), and each
   copy left its old pages resident until purged. pymimalloc's own heaps keep mimalloc's blocks of every size.
   A block that must move to grow goes there sooner, once the size it moves to (with its room: from about 86 KiB
   asked) is above PMI_MOVE_TO_PREVIOUS, the C library's first threshold for blocks of their own mapping
   (M_MMAP_THRESHOLD, 128 KiB unless tuned), which it grows by remapping. Once it freed such a block it raises the
   threshold to that block's size and keeps smaller ones in its heap, where it grows a block in place if it can and
   copies it if not. So the value is a measured one, not a rule: the workload above (instructions.py, `install`
   mode, one build per value, side by side) ran 1.0138x pymalloc's instructions with 512 KiB, 1.0119 with 256 KiB,
   1.0073 with 128 KiB, 1.0079 with 64 KiB, 1.0095 with 32 and with 8 KiB; its CPU time with 128 KiB was 0.997 of
   512 KiB's (21 paired runs), with fewer page faults. */
#define PMI_TO_PREVIOUS (512 * 1024)
#ifndef PMI_MOVE_TO_PREVIOUS
#define PMI_MOVE_TO_PREVIOUS (128 * 1024)
#endif
/* From this many bytes a moving block gets as much again (twice its size): in Python's heap that sends it to the
   previous allocator, and a heap holding Python objects, which keeps every block for its counts, copies fewer
   times (without it, python_objects() went from 1.146 to 1.158x install()'s instructions) */
#ifndef PMI_DOUBLE_ROOM
#define PMI_DOUBLE_ROOM (256 * 1024)
#endif
#ifndef PMI_GROW_ROOM
#define PMI_GROW_ROOM 4096
#endif
/* The size to ask for first when a block of `usable` bytes is resized to `size` (at least PMI_MIN_BLOCK): `size`
   with the room above if the block must move to grow, else `size` itself. Python's heap and the heaps that hold
   Python objects (python_objects(): an objects heap once moved every growth without room, and copied 7x the
   bytes, benchmarks/objects_instructions.py) grow by the same rule. */
static inline size_t pmi_grow_size(size_t size, size_t usable) {
    size_t roomy;
    if (size < PMI_GROW_ROOM || size <= usable) return size;
    if (__builtin_add_overflow(size, size >= PMI_DOUBLE_ROOM ? size : size / 2, &roomy)) return size;
    return roomy;
}

/* A block of Python's heap, on `page`, resized to `size` bytes; `previous` is the domain's previous allocator. */
static inline void* pmi_python_realloc(const PyMemAllocatorEx* previous, struct mi_page_s* page, void* ptr, size_t size) {
    size = pmi_at_least(size);
    pmi_theap_ensure(pmi_python_heap);  /* a block of another thread may be this thread's first use */
    const size_t usable = pmi_page_usable(page, ptr);
    const size_t roomy = pmi_grow_size(size, usable);
    if (roomy != size && roomy > PMI_MOVE_TO_PREVIOUS) {  /* to the previous allocator (PMI_MOVE_TO_PREVIOUS says why) */
        void* const q = previous->malloc(previous->ctx, size);
        if (q == NULL) return NULL;
        memcpy(q, ptr, usable);
        pmi_free_purge_now(ptr);  /* a page of its own goes back to the OS now, as the C library's would */
        return q;
    }
    return pmi_page_realloc(pmi_python_heap, page, ptr, size, roomy);
}

/* MEM and OBJ: this thread's chosen heap first, if it takes the block */
static inline void* pmi_target_malloc(pmi_heap_t* target, pmi_thread_t* me, size_t size, bool zero) {
    return zero ? pmi_data_alloc(target, pmi_at_least(size), true) : pmi_object_malloc(target, me, pmi_at_least(size));
}

static void* pmi_target_calloc(pmi_heap_t* target, size_t nelem, size_t elsize) {
    size_t total;
    if (__builtin_mul_overflow(nelem, elsize, &total)) return NULL;
    void* p = pmi_target_malloc(target, NULL, total, true);
    return p != NULL ? p : pmi_mi_calloc(nelem, elsize);
}

/* `ptr` is a live block of mimalloc heap `owner` (not Python's own heap): a chosen heap's. */
static void* pmi_owned_realloc(mi_heap_t* owner, void* ptr, size_t size) {
    pmi_heap_t* h = pmi_target_of(owner);
    if (h == NULL) return mi_realloc(ptr, pmi_at_least(size));  /* not given out by this hook */
    size = pmi_at_least(size);
    const size_t roomy = pmi_grow_size(size, mi_usable_size(ptr));
    void* q = pmi_data_realloc(h, ptr, roomy);
    if (q == NULL && roomy != size) q = pmi_data_realloc(h, ptr, size);
    if (q != NULL) return q;
    /* frozen by a walk (or out of memory there): move it to Python's heap, and let the glue defer the free */
    q = pmi_mi_malloc(size);
    if (q == NULL) return NULL;
    const size_t old = mi_usable_size(ptr);
    memcpy(q, ptr, old < size ? old : size);
    pmi_data_free(h, ptr);
    return q;
}

/* A free of a block on a page of a heap other than Python's own. The common case inline (the heap this thread
   freed into last, still in the table), everything else in a function of its own, so that the common case calls
   nothing but in tail position and saves no register. */
static __attribute__((noinline)) void pmi_owned_free_slow(struct mi_page_s* page, void* ptr) {
    pmi_thread_t* const me = pmi_thread_self();
    const mi_heap_t* const owner = pmi_page_owner(page);
    pmi_heap_t* const h = pmi_target_of_refresh(me, owner, atomic_load_explicit(&pmi_targets_generation, memory_order_acquire));
    if (h != NULL) pmi_object_free(h, me, page, ptr);
    else pmi_page_free(page, ptr);  /* not given out by this hook */
}

static inline __attribute__((always_inline)) void pmi_owned_free(struct mi_page_s* page, void* ptr) {
    pmi_thread_t* const me = pmi_thread_self();
    const uint64_t generation = atomic_load_explicit(&pmi_targets_generation, memory_order_acquire);
    /* Never a hit before this thread's first such free: its cache says generation 0. A page of the main heap says
       NULL (pmi_page_in) and never matches what the cache holds (the main heap's address), so it takes the slow path. */
    if (__builtin_expect(pmi_page_in(page, me->owner_raw) && me->owner_generation == generation, 1)) {
        pmi_object_free(me->owner_wrapper, me, page, ptr);
        return;
    }
    pmi_owned_free_slow(page, ptr);
}

/* Whether a block on this mimalloc page may belong to a heap other than Python's own (a python_objects()
   heap). No heap ever held Python objects while pmi_targets_high is 0, and then the page's heap is not read:
   it sits on another cache line of the page record than the fields the free uses. A thread that frees a
   target heap's block got it after the entry was written (the GIL orders MEM and OBJ, and a RAW block is
   never a target's), so it sees pmi_targets_high above 0. */
static inline bool pmi_maybe_target(const struct mi_page_s* page) {
    return atomic_load_explicit(&pmi_targets_high, memory_order_acquire) != 0 && !pmi_page_in(page, pmi_python_heap);
}

/* The hook's four functions for one domain. RAW brackets its mimalloc calls and has no chosen heaps
   (`targets` false); MEM and OBJ look at this thread's chosen heap (see the top of this file).
   malloc and free are CPython's hottest calls, and calloc makes every list's items: their common case (no chosen
   heap, the domain routed; a small block for calloc; a block on a mimalloc page while no heap ever held Python
   objects) needs no saved register, and everything else is in a function of its own (`_other`), so that the
   common case compiles to a few loads and a jump into mimalloc's own fast path. */
#define PMI_LIKELY(x) __builtin_expect(!!(x), 1)
#define PMI_DOMAIN_FUNCTIONS(name, domain, bit, enter, leave, targets)                                         \
    static inline void* pmi_##name##_python_malloc(size_t size) {  /* Python's heap, or the previous allocator */ \
        if (__builtin_expect(size > PMI_TO_PREVIOUS, 0))                                                       \
            return pmi_previous[domain].malloc(pmi_previous[domain].ctx, size);                                \
        enter; void* p = pmi_mi_malloc(size); leave;                                                           \
        return p;                                                                                              \
    }                                                                                                          \
    static __attribute__((noinline, unused)) void* pmi_##name##_malloc_chosen(size_t size) {                   \
        pmi_thread_t* const me = pmi_thread_self();                                                            \
        pmi_heap_t* const target = pmi_thread_target(me);                                                      \
        if (target != NULL) {                                                                                  \
            void* p = pmi_target_malloc(target, me, size, false);                                              \
            if (p != NULL) return p;                                                                           \
        }                                                                                                      \
        else if (!(atomic_load_explicit(&pmi_routed, memory_order_relaxed) & (bit)))                           \
            return pmi_previous[domain].malloc(pmi_previous[domain].ctx, size);                                \
        return pmi_##name##_python_malloc(size);                                                               \
    }                                                                                                          \
    static __attribute__((noinline)) void* pmi_##name##_malloc_other(size_t size) {                            \
        if ((targets) && pmi_objects_anywhere()) {                                                             \
            pmi_thread_t* const me = pmi_thread_self();                                                        \
            pmi_heap_t* const target = pmi_thread_target_cached(me);                                           \
            if (target != NULL && target != PMI_TARGET_UNKNOWN) {                                              \
                void* p = pmi_object_malloc_fast(target, me, pmi_at_least(size));                              \
                if (p != NULL) return p;                                                                       \
            }                                                                                                  \
            if (target != NULL) return pmi_##name##_malloc_chosen(size);                                       \
        }                                                                                                      \
        if (!(atomic_load_explicit(&pmi_routed, memory_order_relaxed) & (bit)))                                \
            return pmi_previous[domain].malloc(pmi_previous[domain].ctx, size);                                \
        return pmi_##name##_python_malloc(size);                                                               \
    }                                                                                                          \
    static __attribute__((noinline)) void* pmi_##name##_malloc_miss(size_t size) {                             \
        if (__builtin_expect(size > PMI_TO_PREVIOUS, 0))                                                       \
            return pmi_previous[domain].malloc(pmi_previous[domain].ctx, size);                                \
        enter; void* p = pmi_heap_malloc_slow(pmi_python_heap, pmi_at_least(size)); leave;                    \
        return p;                                                                                              \
    }                                                                                                          \
    static void* pmi_##name##_malloc(void* ctx, size_t size) {                                                 \
        (void)ctx;                                                                                             \
        mi_heap_t* const heap = atomic_load_explicit(&pmi_fast_heap[domain], memory_order_relaxed);           \
        if (PMI_LIKELY(heap != NULL)) {                                                                        \
            enter; void* const p = pmi_fast_malloc_small(heap, pmi_at_least(size)); leave;                     \
            if (PMI_LIKELY(p != NULL)) return p;                                                               \
            return pmi_##name##_malloc_miss(size);                                                             \
        }                                                                                                      \
        return pmi_##name##_malloc_other(size);                                                                \
    }                                                                                                          \
    static __attribute__((noinline)) void* pmi_##name##_calloc_other(size_t nelem, size_t elsize) {            \
        pmi_heap_t* const target = (targets) && pmi_objects_anywhere() ? pmi_thread_target(pmi_thread_self()) : NULL; \
        if (target != NULL) return pmi_target_calloc(target, nelem, elsize);                                   \
        if (!(atomic_load_explicit(&pmi_routed, memory_order_relaxed) & (bit)))                                \
            return pmi_previous[domain].calloc(pmi_previous[domain].ctx, nelem, elsize);                       \
        size_t total;                                                                                          \
        if (__builtin_mul_overflow(nelem, elsize, &total)) return NULL;                                        \
        if (__builtin_expect(total > PMI_TO_PREVIOUS, 0))                                                      \
            return pmi_previous[domain].calloc(pmi_previous[domain].ctx, nelem, elsize);                       \
        enter; void* p = pmi_mi_calloc(nelem, elsize); leave;                                                  \
        return p;                                                                                              \
    }                                                                                                          \
    static void* pmi_##name##_calloc(void* ctx, size_t nelem, size_t elsize) {                                 \
        (void)ctx;                                                                                             \
        size_t total;                                                                                          \
        mi_heap_t* const heap = atomic_load_explicit(&pmi_fast_heap[domain], memory_order_relaxed);           \
        if (PMI_LIKELY(heap != NULL && !__builtin_mul_overflow(nelem, elsize, &total))) {                     \
            enter; void* const p = pmi_fast_zalloc_small(heap, pmi_at_least(total)); leave;                    \
            if (PMI_LIKELY(p != NULL)) return p;                                                               \
        }                                                                                                      \
        return pmi_##name##_calloc_other(nelem, elsize);                                                       \
    }                                                                                                          \
    static __attribute__((noinline)) void pmi_##name##_free_other(void* ptr) {                                 \
        if (ptr != NULL) pmi_previous[domain].free(pmi_previous[domain].ctx, ptr);                             \
    }                                                                                                          \
    static __attribute__((noinline)) void pmi_##name##_free_owned(struct mi_page_s* page, void* ptr) {         \
        pmi_owned_free(page, ptr);                                                                             \
    }                                                                                                          \
    PMI_LOOKUP_FUNCTIONS(name, domain, enter, leave, , pmi_page_of)                                            \
    PMI_LOOKUP_FUNCTIONS(name, domain, enter, leave, _committed, pmi_page_of_committed)

/* A domain's realloc and free, which look the block up with `lookup` (pmi_page_of, or pmi_page_of_committed where
   the page map is committed whole): each domain has both pairs, and _allocator_hook installs one */
#define PMI_LOOKUP_FUNCTIONS(name, domain, enter, leave, suffix, lookup)                                         \
    static void* pmi_##name##_realloc##suffix(void* ctx, void* ptr, size_t size) {                             \
        if (ptr == NULL) return pmi_##name##_malloc(ctx, size);                                                \
        struct mi_page_s* const page = lookup(ptr);                                                            \
        if (page == NULL) return pmi_previous[domain].realloc(pmi_previous[domain].ctx, ptr, size);            \
        if (pmi_maybe_target(page)) return pmi_owned_realloc(pmi_page_owner(page), ptr, size);                 \
        enter; void* p = pmi_python_realloc(&pmi_previous[domain], page, ptr, size); leave;                    \
        return p;                                                                                              \
    }                                                                                                          \
    static void pmi_##name##_free##suffix(void* ctx, void* ptr) {                                              \
        (void)ctx;                                                                                             \
        struct mi_page_s* const page = lookup(ptr);                                                            \
        if (PMI_LIKELY(page != NULL)) {                                                                        \
            if (PMI_LIKELY(!pmi_maybe_target(page))) {                                                         \
                enter; pmi_page_free(page, ptr); leave;                                                        \
                return;                                                                                        \
            }                                                                                                  \
            pmi_##name##_free_owned(page, ptr);                                                                \
            return;                                                                                            \
        }                                                                                                      \
        pmi_##name##_free_other(ptr);                                                                          \
    }

PMI_DOMAIN_FUNCTIONS(raw, PYMEM_DOMAIN_RAW, PMI_DOMAIN_RAW, pmi_world_enter(), pmi_world_leave(), false)
PMI_DOMAIN_FUNCTIONS(mem, PYMEM_DOMAIN_MEM, PMI_DOMAIN_MEM, (void)0, (void)0, true)
PMI_DOMAIN_FUNCTIONS(obj, PYMEM_DOMAIN_OBJ, PMI_DOMAIN_OBJ, (void)0, (void)0, true)

static const struct {
    int bit;
    PyMemAllocatorDomain domain;
    PyMemAllocatorEx hook;
    void* (*realloc_committed)(void* ctx, void* ptr, size_t size);  /* the hook's, where pmi_page_map_committed() */
    void (*free_committed)(void* ctx, void* ptr);
} pmi_domains[] = {
    {PMI_DOMAIN_RAW, PYMEM_DOMAIN_RAW, {NULL, pmi_raw_malloc, pmi_raw_calloc, pmi_raw_realloc, pmi_raw_free},
     pmi_raw_realloc_committed, pmi_raw_free_committed},
    {PMI_DOMAIN_MEM, PYMEM_DOMAIN_MEM, {NULL, pmi_mem_malloc, pmi_mem_calloc, pmi_mem_realloc, pmi_mem_free},
     pmi_mem_realloc_committed, pmi_mem_free_committed},
    {PMI_DOMAIN_OBJ, PYMEM_DOMAIN_OBJ, {NULL, pmi_obj_malloc, pmi_obj_calloc, pmi_obj_realloc, pmi_obj_free},
     pmi_obj_realloc_committed, pmi_obj_free_committed},
};

/* CPython's debug hooks (PYTHONMALLOC=debug, -X dev, debug builds) wrap each block in a header and a
   trailer. Our hook in front of them would make their checks miss every new block, and beneath them it
   would be handed pointers it did not give out; so pymimalloc refuses to install while they serve.
   CPython names its current allocator configuration (_PyMem_GetCurrentAllocatorName, exported by 3.8 to
   3.13 and looked up at run time in case a build does not export it): "pymalloc_debug", "malloc_debug",
   "mimalloc_debug". It is NULL when a hook sits in front (ours, once we hooked a domain, or another
   library's), or if the lookup fails: then the debug hooks show in the bytes around a new block, 0xFD
   from just before it and just after the size asked for. */
static bool pmi_debug_hooks_serve(void) {
    typedef const char* (*name_fn)(void);
    static name_fn current_name;
    static bool looked_up;
    if (!looked_up) {
        current_name = (name_fn)dlsym(RTLD_DEFAULT, "_PyMem_GetCurrentAllocatorName");
        looked_up = true;
    }
    if (current_name != NULL) {
        const char* name = current_name();
        if (name != NULL) return strstr(name, "debug") != NULL;
    }
    if (atomic_load(&pmi_hooked) != 0) return false;  /* checked when the first domain was hooked */
    /* No name: a hook wraps the allocator (tracemalloc tracing, another library's). Look at what it hands out: the
       debug hooks fill a new block with PYMEM_CLEANBYTE (0xCD). Only the block itself is read; the debug hooks'
       guard bytes around it are outside the block for any other allocator (ASan reported the check that read them:
       a heap-buffer-overflow under tracemalloc at start). Another allocator's 16 bytes are its own, unset. */
    PyMemAllocatorEx current;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &current);
    unsigned char* p = current.malloc(current.ctx, 16);
    if (p == NULL) return false;
    bool debug = true;
    for (int i = 0; i < 16 && debug; i++) debug = (p[i] == 0xCD);
    current.free(current.ctx, p);
    return debug;
}

static PyObject* pmi_allocator_hook(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "_allocator_hook(domains, route)"); return NULL; }
    const long mask = PyLong_AsLong(args[0]);
    if (mask == -1 && PyErr_Occurred()) return NULL;
    const int route = PyObject_IsTrue(args[1]);
    if (route < 0) return NULL;
    const int hooked = atomic_load(&pmi_hooked);
    const int wanted = (int)mask & ~hooked & (PMI_DOMAIN_RAW | PMI_DOMAIN_MEM | PMI_DOMAIN_OBJ);
    if (wanted != 0 && pmi_debug_hooks_serve()) return PyLong_FromLong(PMI_EDEBUGHOOKS);
    if (wanted != 0 && pmi_python_heap == NULL) {
        pmi_python_heap = pmi_heap_new_unwrapped();
        if (pmi_python_heap == NULL) return PyLong_FromLong(PMI_ENOMEM);
    }
    for (size_t i = 0; i < sizeof(pmi_domains) / sizeof(pmi_domains[0]); i++) {
        if (!(wanted & pmi_domains[i].bit)) continue;
        const PyMemAllocatorDomain domain = pmi_domains[i].domain;
        PyMem_GetAllocator(domain, &pmi_previous[domain]);
        if (route) atomic_fetch_or(&pmi_routed, pmi_domains[i].bit);  /* before the hook is seen: it allocates at once */
        pmi_fast_update();
        PyMemAllocatorEx hook = pmi_domains[i].hook;
        if (pmi_page_map_committed()) {  /* Linux, by default: each free looks its block up without the commit test */
            hook.realloc = pmi_domains[i].realloc_committed;
            hook.free = pmi_domains[i].free_committed;
        }
        PyMem_SetAllocator(domain, &hook);
        atomic_fetch_or(&pmi_hooked, pmi_domains[i].bit);
    }
    if (route) atomic_fetch_or(&pmi_routed, (int)mask & atomic_load(&pmi_hooked));
    pmi_fast_update();
    return PyLong_FromLong(PMI_OK);
}

/* _allocator_check(domains) -> status: what _allocator_hook would refuse, without changing anything (so that
   Python refuses before it touches tracemalloc) */
static PyObject* pmi_allocator_check(PyObject* self, PyObject* arg) {
    (void)self;
    const long mask = PyLong_AsLong(arg);
    if (mask == -1 && PyErr_Occurred()) return NULL;
    const int wanted = (int)mask & ~atomic_load(&pmi_hooked) & (PMI_DOMAIN_RAW | PMI_DOMAIN_MEM | PMI_DOMAIN_OBJ);
    return PyLong_FromLong(wanted != 0 && pmi_debug_hooks_serve() ? PMI_EDEBUGHOOKS : PMI_OK);
}

static PyObject* pmi_allocator_route(PyObject* self, PyObject* arg) {
    (void)self;
    const long mask = PyLong_AsLong(arg);
    if (mask == -1 && PyErr_Occurred()) return NULL;
    atomic_store(&pmi_routed, (int)mask & atomic_load(&pmi_hooked));
    pmi_fast_update();
    Py_RETURN_NONE;
}

static PyObject* pmi_allocator_state(PyObject* self, PyObject* unused) {
    (void)self; (void)unused;
    return Py_BuildValue("ii", atomic_load(&pmi_hooked), atomic_load(&pmi_routed));
}

/* A python_objects() scope starts holding `h` (pmi_python.c, with the GIL held): frees will find it. */
int pmi_objects_begin(pmi_heap_t* h) {
    const int needed = PMI_DOMAIN_MEM | PMI_DOMAIN_OBJ;
    if ((atomic_load(&pmi_hooked) & needed) != needed) return PMI_ENOTHOOKED;
    if (!pmi_target_remember(h)) return PMI_ETARGETS;
    atomic_fetch_add(&pmi_objects_held, 1);
    pmi_fast_update();
    return PMI_OK;
}

void pmi_objects_end(void) {
    atomic_fetch_sub(&pmi_objects_held, 1);
    pmi_fast_update();
    pmi_objects_changed();
}

static PyMethodDef pmi_allocator_functions[] = {
    {"_allocator_hook", (PyCFunction)(void (*)(void))pmi_allocator_hook, METH_FASTCALL, NULL},
    {"_allocator_route", pmi_allocator_route, METH_O, NULL},
    {"_allocator_check", pmi_allocator_check, METH_O, NULL},
    {"_allocator_state", pmi_allocator_state, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int pmi_allocator_install(uintptr_t caller) {
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released the GIL around this call */
    PyObject* module = pmi_module_get(caller);
    const int status = pmi_module_status(module, module != NULL ? pmi_module_add_functions(module, pmi_allocator_functions) : -1);
    atomic_store(&pmi_heap_destroying, &pmi_allocator_forget);
    Py_XDECREF(module);
    PyGILState_Release(gil);
    return status;
}
