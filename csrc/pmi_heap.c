/* pymimalloc's heap and block glue. See pmi_heap.h for the ownership model and the locking rules. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>  /* only for PyTraceMalloc_Track/Untrack, always called outside our brackets */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/membarrier.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mimalloc.h>
#include <mimalloc-stats.h>
#include "mimalloc/internal.h"  /* page geometry for pmi_usable_size */
#include "bitmap.h"             /* arena limits (MI_ARENA_MAX_SIZE) */
#include "pmi_heap.h"
#include "pmi_internal.h"

/* One thread slot's share of a heap's counters, alone on its cache line, written by the slot's owner only
   (the last stripe: by every thread without a slot, with locked instructions; see pmi_heap.h). `active`
   goes up and down in one thread, so it is never negative; live bytes go up where a block is allocated
   and down where it is freed, so one stripe may be negative while the sum is not. Blocks are counted
   by two totals that only grow, allocations and frees: the live blocks are their difference, and a free
   writes one counter where it wrote two (a live count, and the mark that it ever counted). */
#define PMI_OWNED 16
#define PMI_STRIPES (PMI_OWNED + 1)
typedef struct pmi_stripe_s {
    atomic_intptr_t active;        /* calls in flight that use the heap */
    atomic_intptr_t freed_blocks;  /* frees counted here, ever (a deferred free counts once it is done) */
    atomic_intptr_t live_bytes;
    atomic_intptr_t peak_bytes;    /* the highest live_bytes this stripe reached */
    atomic_intptr_t total_blocks;  /* allocations counted here, ever */
    atomic_intptr_t touched;       /* 1 once this stripe counted a resize (pmi_heap_peak_exact) */
    atomic_intptr_t huge_bytes;    /* the live bytes of blocks counted above PMI_HUGE_COUNTED (pmi_heap_huge_bytes) */
} __attribute__((aligned(64))) pmi_stripe_t;

struct pmi_heap_s {
    pmi_stripe_t      stripes[PMI_STRIPES];
    mi_heap_t*        heap;          /* valid until `released` */
    bool              is_main;
    atomic_intptr_t   refs;          /* the Python handle + one per numpy handler */
    atomic_intptr_t   pending;       /* threads finishing off a closed heap outside a bracket (pmi_heap_hold) */
    atomic_int        dead;          /* 1 once pmi_heap_drop decided to free the wrapper */
    atomic_int        flags;         /* PMI_HEAP_* below: one load tells a call whether the heap refuses it */
    atomic_int        released;      /* 1 once a thread decided to destroy the mimalloc heap (exactly one sets it) */
    atomic_int        destroyed;     /* 1 once mi_heap_destroy ran: after `released`, under the world lock */
    atomic_intptr_t   pins;          /* as_default(), numpy_allocator() and python_objects() blocks holding it */
    _Atomic(pmi_block_t*) deferred;  /* records released while frozen (a lock-free stack) */
    pthread_mutex_t   lock;          /* serialises close, freeze and thaw of this heap */
    int               freeze_depth;  /* guarded by lock */
    pmi_heap_t*       next;          /* the registry of wrappers, guarded by pmi_registry_lock */
    pmi_heap_t*       prev;
};

/* The slot of the stripe at byte offset `stripe` (pmi_thread.stripe, not PMI_NO_SLOT), and the stripe itself in
   heap `h`: the offset as it is, where &h->stripes[slot] would multiply the slot again. */
#define PMI_OWNED_STRIPES (PMI_OWNED * (unsigned)sizeof(pmi_stripe_t))
static inline unsigned pmi_slot_of(unsigned stripe) { return stripe / (unsigned)sizeof(pmi_stripe_t); }
static inline pmi_stripe_t* pmi_stripe_at(pmi_heap_t* h, unsigned stripe) {
    return (pmi_stripe_t*)((char*)h->stripes + stripe);
}

#define PMI_HEAP_CLOSED  1  /* closed, for good */
#define PMI_HEAP_CLOSING 2  /* a close decides: allocations wait for its outcome */
#define PMI_HEAP_FROZEN  4  /* freeze_depth > 0 */
#define PMI_HEAP_WORLD   8  /* the world is stopped (pmi_world_stop, for every registered heap): calls wait */
static inline int  pmi_flags(pmi_heap_t* h) { return atomic_load(&h->flags); }
static inline bool pmi_is_closed(pmi_heap_t* h) { return (pmi_flags(h) & PMI_HEAP_CLOSED) != 0; }
static inline bool pmi_is_frozen(pmi_heap_t* h) { return (pmi_flags(h) & PMI_HEAP_FROZEN) != 0; }
static inline void pmi_flag_raise(pmi_heap_t* h, int flag) { atomic_fetch_or(&h->flags, flag); }
static inline void pmi_flag_lower(pmi_heap_t* h, int flag) { atomic_fetch_and(&h->flags, ~flag); }

/* -- process-wide locks (see pmi_heap.h) ----------------------------------------------------------- */

static pthread_mutex_t  pmi_world_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t pmi_exit_lock = PTHREAD_RWLOCK_INITIALIZER;   /* thread exits: shared; walks: exclusive */
static pthread_rwlock_t pmi_unmap_lock = PTHREAD_RWLOCK_INITIALIZER;  /* lookups: shared; munmap: exclusive */
static pthread_mutex_t  pmi_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pmi_heap_t*      pmi_registry;
static atomic_int       pmi_world_stopped;  /* > 0: a main-heap walk or a fork waits for every bracket */

/* Our own bookkeeping (heap wrappers, statistics text, deferred and walk records) lives in the C library's heap,
   so it never shows up in a user's heap, its counters or its visits, nor in the main heap, which a walk may hold
   frozen. (A private mimalloc heap served the wrappers and text until 2026-12-05: a heap of its own cost each
   process about 60 KiB of RSS at start, its theap, its first page and the page table mimalloc v3 zeroes for every
   heap in every arena.) */
static pmi_heap_t* pmi_main_wrapper;
_Atomic(pmi_heap_destroying_fn) pmi_heap_destroying;

/* mimalloc's error reports (it prints them only with show_errors): counted, so tests and checked CI
   builds fail on any they do not expect. mimalloc also reports plain exhaustion as EFAULT ("unable to
   allocate theap meta-data"), so nothing here aborts: the failed call returns NULL and Python raises. */
static atomic_long pmi_errors;
static atomic_int pmi_last_error;

static void pmi_on_error(int err, void* arg) {
    (void)arg;
    atomic_fetch_add(&pmi_errors, 1);
    atomic_store(&pmi_last_error, err);
}

long pmi_error_count(void) { return atomic_load(&pmi_errors); }
int pmi_error_last(void) { return atomic_load(&pmi_last_error); }

/* -- fences (the two sides of the bracket handshake, see pmi_heap.h) --------------------------------- */

#ifndef PMI_ASYMMETRIC_FENCE
#define PMI_ASYMMETRIC_FENCE 1
#endif
static int pmi_fences = PMI_FENCE_BUILD;  /* chosen by pmi_fences_choose while no other thread brackets */
static void* pmi_fence_page;              /* the mprotect fallback's page */

static long pmi_membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

/* At pmi_init, and in a forked child: the process's registration, or the fallback if the kernel says no. In the
   fallback no thread owns a stripe (pmi_slot_take): every thread writes the shared stripe with locked
   read-modify-writes, each a full barrier, so the light side needs no fence of its own and the owned stripes'
   fast paths need not ask which protocol runs. */
static void pmi_fences_choose(void) {
#if PMI_ASYMMETRIC_FENCE
    const long supported = pmi_membarrier(MEMBARRIER_CMD_QUERY);
    if (pmi_fence_page == NULL) {  /* the fallback's page, made now so that the fallback cannot fail */
        void* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        pmi_fence_page = (page == MAP_FAILED ? NULL : page);
    }
    const bool ok = pmi_fence_page != NULL && supported > 0 && (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED)
                    && pmi_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
                    && pmi_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0;
    pmi_fences = ok ? PMI_FENCE_MEMBARRIER : PMI_FENCE_SEQ_CST;
#endif
}

int pmi_fence_mode(void) { return pmi_fences; }

/* The caller's side: after its store to its own stripe, before it loads a flag. A thread owns a stripe only where
   membarrier is registered (pmi_fences_choose), so only the build decides. */
static inline void pmi_light_fence(void) {
#if PMI_ASYMMETRIC_FENCE
    atomic_signal_fence(memory_order_seq_cst);
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* folly's fallback for a registered membarrier that fails after all: changing a touched page's protection
   makes the kernel shoot down the TLB of every CPU that runs this process, a full barrier on each. */
static void pmi_heavy_fallback(void) {
    (void)mprotect(pmi_fence_page, 4096, PROT_READ | PROT_WRITE);
    *(volatile char*)pmi_fence_page = 0;
    (void)mprotect(pmi_fence_page, 4096, PROT_READ);
}

/* The waiter's side: after it stored its flag, before it reads anyone's stripe. */
static void pmi_heavy_fence(void) {
    atomic_thread_fence(memory_order_seq_cst);
#if PMI_ASYMMETRIC_FENCE
    if (pmi_fences == PMI_FENCE_MEMBARRIER && pmi_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
        static pthread_mutex_t fallback_lock = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&fallback_lock);
        pmi_heavy_fallback();
        pthread_mutex_unlock(&fallback_lock);
    }
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* -- thread slots and stripes ---------------------------------------------------------------------- */

static atomic_uint pmi_slots_taken;             /* bit i: slot i has an owner */
__thread pmi_thread_t pmi_thread = {.stripe = PMI_NO_SLOT};  /* an image every thread starts from */

#if PMI_SCHEDULE_NOISE
/* One call in 4 yields the CPU and one in 64 sleeps 50 us, as each thread's own xorshift decides. Called only
   outside every bracket and never from a signal handler, at these steps: a freeze raised and not yet waited on, a
   walk between its freeze and its visit and between its thaw and the drain of what was deferred meanwhile, each
   deferred free of a drain, a close between raising `closing` and its wait, and between its decision and the
   release of the mimalloc heap, and a deferred record pushed before the frozen flag is read again. With the walk of
   the commit before f5f529a (it drained its deferred frees while it held the world lock), a checked build ran
   tests/children/broad_stress.py (8 s) into that hang in 3 of 3 runs with the noise, and in 0 of 3 without it. */
void pmi_schedule_noise(void) {
    uint32_t x = pmi_thread.noise;
    if (x == 0) x = (uint32_t)(uintptr_t)&pmi_thread | 1u;  /* a seed of its own per thread, never 0 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    pmi_thread.noise = x;
    if ((x & 63) == 0) {
        const struct timespec pause = {0, 50000};
        nanosleep(&pause, NULL);
    }
    else if ((x & 3) == 0) sched_yield();
}
#endif
static pthread_key_t pmi_slot_key;              /* its destructor gives the slot back at thread exit */
static bool pmi_slot_key_made;

static void pmi_slot_give_back(void* unused) {
    (void)unused;
    const unsigned slot = pmi_slot_of(pmi_thread.stripe);
    pmi_thread.stripe = PMI_NO_SLOT;
    /* release: this thread's last stores to its stripes come before the next owner's first */
    if (slot < PMI_OWNED) atomic_fetch_and_explicit(&pmi_slots_taken, ~(1u << slot), memory_order_release);
}

/* A thread's first glue call: the lowest free slot, or the shared stripe if all are taken. A glue call
   from a later key destructor takes a slot again (pthread calls the destructors again); one taken in the
   last round is kept for good, which only leaves one slot fewer to own. */
static __attribute__((noinline)) unsigned pmi_slot_take(void) {
    unsigned taken = atomic_load_explicit(&pmi_slots_taken, memory_order_relaxed);
    unsigned slot = PMI_OWNED;
    while (pmi_fences != PMI_FENCE_SEQ_CST && taken != (1u << PMI_OWNED) - 1) {
        const unsigned candidate = (unsigned)__builtin_ctz(~taken);
        if (atomic_compare_exchange_weak_explicit(&pmi_slots_taken, &taken, taken | (1u << candidate),
                                                  memory_order_acquire, memory_order_relaxed)) {
            slot = candidate;
            break;
        }
    }
    if (slot < PMI_OWNED && (!pmi_slot_key_made || pthread_setspecific(pmi_slot_key, (void*)1) != 0)) {
        atomic_fetch_and_explicit(&pmi_slots_taken, ~(1u << slot), memory_order_release);  /* no exit hook */
        slot = PMI_OWNED;
    }
    pmi_thread.stripe = slot * (unsigned)sizeof(pmi_stripe_t);
    return slot;
}

/* This thread's slot; `me` is &pmi_thread, for callers that found it already (one thread-local lookup) */
static inline unsigned pmi_slot_in(pmi_thread_t* me) {
    const unsigned stripe = me->stripe;
    return __builtin_expect(stripe != PMI_NO_SLOT, 1) ? pmi_slot_of(stripe) : pmi_slot_take();
}
static inline unsigned pmi_slot(void) { return pmi_slot_in(&pmi_thread); }

/* Add to a counter of a stripe the calling thread owns, its only writer, and return the new value. On x86-64 an add
   to memory without the lock prefix: one instruction where an atomic load and store are three, and readers still
   see the word whole (an aligned 8-byte store) and in order (x86 stores are releases; the "memory" clobber keeps
   the compiler from moving the caller's earlier accesses after it). Elsewhere, and for ThreadSanitizer (which
   sees no asm), an atomic load and store. */
#if defined(__x86_64__) && defined(__LP64__) && !defined(__SANITIZE_THREAD__) && PMI_ASYMMETRIC_FENCE
#define PMI_OWN_ADD_ASM 1
#endif
static inline intptr_t pmi_own_add(atomic_intptr_t* counter, intptr_t delta, memory_order order) {
#ifdef PMI_OWN_ADD_ASM
    intptr_t value;  /* the add, then a load of its own store: two instructions, where xadd takes three */
    if (order == memory_order_relaxed)
        __asm__ volatile("addq %2, %0\n\tmovq %0, %1" : "+m"(*(intptr_t*)counter), "=r"(value) : "er"(delta));
    else __asm__ volatile("addq %2, %0\n\tmovq %0, %1" : "+m"(*(intptr_t*)counter), "=r"(value) : "er"(delta) : "memory");
    return value;
#else
    const intptr_t value = atomic_load_explicit(counter, memory_order_relaxed) + delta;
    atomic_store_explicit(counter, value, order);
    return value;
#endif
}

/* The same where the new value is not needed: on x86-64 one add to memory. */
static inline void pmi_own_bump(atomic_intptr_t* counter, intptr_t delta, memory_order order) {
#ifdef PMI_OWN_ADD_ASM
    if (order == memory_order_relaxed) __asm__ volatile("addq %1, %0" : "+m"(*(intptr_t*)counter) : "er"(delta));
    else __asm__ volatile("addq %1, %0" : "+m"(*(intptr_t*)counter) : "er"(delta) : "memory");
#else
    (void)pmi_own_add(counter, delta, order);
#endif
}

/* Add to a counter of the calling thread's stripe: pmi_own_add where the thread owns it. */
static inline intptr_t pmi_add(unsigned slot, atomic_intptr_t* counter, intptr_t delta, memory_order order) {
    if (__builtin_expect(slot < PMI_OWNED, 1)) return pmi_own_add(counter, delta, order);
    return atomic_fetch_add(counter, delta) + delta;  /* the shared stripe: locked, and a full barrier */
}

/* The same where the new value is not needed. */
static inline void pmi_bump(unsigned slot, atomic_intptr_t* counter, intptr_t delta, memory_order order) {
    if (__builtin_expect(slot < PMI_OWNED, 1)) pmi_own_bump(counter, delta, order);
    else atomic_fetch_add(counter, delta);
}

/* Into a bracket (the caller's side of the handshake) and out of it. */
static inline void pmi_bracket_in(unsigned slot, atomic_intptr_t* active) {
    if (__builtin_expect(slot < PMI_OWNED, 1)) {
        pmi_own_bump(active, 1, memory_order_relaxed);
        pmi_light_fence();
    }
    else atomic_fetch_add(active, 1);
}

static inline void pmi_bracket_out(unsigned slot, atomic_intptr_t* active) {
    pmi_bump(slot, active, -1, memory_order_release);
}

/* Calls in flight on the heap, all threads. Zero means none: each stripe's count is never negative, and a
   bracket that starts after its stripe was read sees whatever flag the caller raised before the heavy fence. */
static intptr_t pmi_active_sum(pmi_heap_t* h) {
    intptr_t sum = 0;
    for (int i = 0; i < PMI_STRIPES; i++) sum += atomic_load_explicit(&h->stripes[i].active, memory_order_acquire);
    return sum;
}

/* Wait for brackets to drain. The caller raised its flag before, and issued the heavy fence since. */
static void pmi_wait_drained_fenced(pmi_heap_t* h) {
    while (pmi_active_sum(h) != 0) sched_yield();
}

static void pmi_wait_drained(pmi_heap_t* h) {
    pmi_heavy_fence();
    pmi_wait_drained_fenced(h);
}

/* Blocks alive: allocations less frees, all stripes. On a closed heap nothing allocates, so the allocations are
   fixed and the sum only falls, and each stripe's frees are read no earlier than its own last count (the caller
   fenced: see pmi_heap_try_release), so a sum of zero is exact. */
static intptr_t pmi_live_sum(pmi_heap_t* h) {
    intptr_t sum = 0;
    for (int i = 0; i < PMI_STRIPES; i++) {
        sum += atomic_load_explicit(&h->stripes[i].total_blocks, memory_order_acquire)
               - atomic_load_explicit(&h->stripes[i].freed_blocks, memory_order_acquire);
    }
    return sum;
}

static void pmi_registry_add(pmi_heap_t* h) {
    pthread_mutex_lock(&pmi_registry_lock);
    if (atomic_load(&pmi_world_stopped) > 0) pmi_flag_raise(h, PMI_HEAP_WORLD);  /* pmi_world_stop missed it */
    h->prev = NULL;
    h->next = pmi_registry;
    if (pmi_registry != NULL) pmi_registry->prev = h;
    pmi_registry = h;
    pthread_mutex_unlock(&pmi_registry_lock);
}

static void pmi_registry_remove(pmi_heap_t* h) {
    pthread_mutex_lock(&pmi_registry_lock);
    if (h->next != NULL) h->next->prev = h->prev;
    if (h->prev != NULL) h->prev->next = h->next;
    else pmi_registry = h->next;
    pthread_mutex_unlock(&pmi_registry_lock);
}

/* Stop the world: every bracket in flight drains and new ones wait. Caller holds pmi_world_lock. The stop is a flag
   of every heap (PMI_HEAP_WORLD), so a call tests it with the heap's own; it is raised and lowered under the
   registry's lock, which pmi_registry_add takes too, so a heap registered meanwhile gets it as well.
   pmi_world_stopped says the same for calls that use no heap of their own (pmi_world_enter). */
static void pmi_world_stop(void) {
    pthread_mutex_lock(&pmi_registry_lock);
    atomic_fetch_add(&pmi_world_stopped, 1);
    for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) pmi_flag_raise(h, PMI_HEAP_WORLD);
    pmi_heavy_fence();
    for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) pmi_wait_drained_fenced(h);
    pthread_mutex_unlock(&pmi_registry_lock);
}

static void pmi_world_resume(void) {
    pthread_mutex_lock(&pmi_registry_lock);
    if (atomic_fetch_sub(&pmi_world_stopped, 1) == 1) {
        for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) pmi_flag_lower(h, PMI_HEAP_WORLD);
    }
    pthread_mutex_unlock(&pmi_registry_lock);
}

/* -- brackets -------------------------------------------------------------------------------------- */

/* The hot paths read the thread's slot once (a TLS read is a call under the dynamic TLS model) and pass it
   down: the `_at` functions take it. */
static inline void pmi_leave_at(pmi_heap_t* h, unsigned slot) { pmi_bracket_out(slot, &h->stripes[slot].active); }
static inline void pmi_leave(pmi_heap_t* h) { pmi_leave_at(h, pmi_slot()); }

static inline bool pmi_may_allocate(pmi_heap_t* h) {
    return pmi_flags(h) == 0;
}

static inline bool pmi_may_free(pmi_heap_t* h) {
    return (pmi_flags(h) & (PMI_HEAP_FROZEN | PMI_HEAP_WORLD)) == 0;
}

static __attribute__((noinline)) int pmi_enter_alloc_slow(pmi_heap_t* h, unsigned slot) {
    atomic_intptr_t* active = &h->stripes[slot].active;
    for (;;) {
        pmi_bracket_out(slot, active);
        if (pmi_is_closed(h)) return PMI_ECLOSED;
        if (pmi_is_frozen(h)) return PMI_EFROZEN;
        sched_yield();
        pmi_bracket_in(slot, active);
        if (pmi_may_allocate(h)) return PMI_OK;
    }
}

/* For allocation and collection: PMI_OK inside the bracket, or why not. Waits out a close that is still
   deciding (it may be refused) and a stopped world; fails at once on a closed or frozen heap. */
static inline int pmi_enter_alloc_at(pmi_heap_t* h, unsigned slot) {
    pmi_bracket_in(slot, &h->stripes[slot].active);
    if (__builtin_expect(pmi_may_allocate(h), 1)) return PMI_OK;
    return pmi_enter_alloc_slow(h, slot);
}
static int pmi_enter_alloc(pmi_heap_t* h) { return pmi_enter_alloc_at(h, pmi_slot()); }

static __attribute__((noinline)) bool pmi_enter_free_slow(pmi_heap_t* h, unsigned slot) {
    atomic_intptr_t* active = &h->stripes[slot].active;
    for (;;) {
        pmi_bracket_out(slot, active);
        if (pmi_is_frozen(h)) return false;
        sched_yield();
        pmi_bracket_in(slot, active);
        if (pmi_may_free(h)) return true;
    }
}

/* For frees and for growing a block that outlived its heap: the heap may be closed (its mimalloc heap
   lives while anything in it does). false if frozen: the caller defers. */
static inline bool pmi_enter_free_at(pmi_heap_t* h, unsigned slot) {
    pmi_bracket_in(slot, &h->stripes[slot].active);
    if (__builtin_expect(pmi_may_free(h), 1)) return true;
    return pmi_enter_free_slow(h, slot);
}
static bool pmi_enter_free(pmi_heap_t* h) { return pmi_enter_free_at(h, pmi_slot()); }

/* For process-wide calls: only a stopped world holds them back. */
void pmi_world_enter(void) {
    const unsigned slot = pmi_slot();
    atomic_intptr_t* active = &pmi_main_wrapper->stripes[slot].active;
    for (;;) {
        pmi_bracket_in(slot, active);
        if (!atomic_load(&pmi_world_stopped)) { pmi_thread.world_depth++; return; }
        pmi_bracket_out(slot, active);
        sched_yield();
    }
}

void pmi_world_leave(void) { pmi_thread.world_depth--; pmi_leave(pmi_main_wrapper); }
bool pmi_world_held(void) { return pmi_thread.world_depth > 0; }

/* -- thread exits, fork and unmapping (hooks called from pmi_mimalloc.c and pthread_atfork) --------- */

void pmi_thread_exit_begin(void) { pthread_rwlock_rdlock(&pmi_exit_lock); }
/* Statistics are read and reset with no thread exiting (an exit merges its theap's counters into its heap's, which a
   read adds up: pmi_mimalloc.c) and one at a time (a reset moves the main heap's counters into the process's, and
   cleared the header a read checks: reads in between raised MemoryError, a review found). Taken inside a bracket. */
void pmi_stats_stop(void) { pthread_rwlock_wrlock(&pmi_exit_lock); }
void pmi_stats_resume(void) { pthread_rwlock_unlock(&pmi_exit_lock); }
void pmi_thread_exit_end(void) { pthread_rwlock_unlock(&pmi_exit_lock); }
void pmi_os_unmap_begin(void) { pthread_rwlock_wrlock(&pmi_unmap_lock); }
void pmi_os_unmap_end(void) { pthread_rwlock_unlock(&pmi_unmap_lock); }

/* Before fork: no thread may be inside mimalloc or our glue, or in the middle of a close, or the child
   would inherit held locks and counts with no thread left to release them. */
static void pmi_fork_prepare(void) {
    pthread_mutex_lock(&pmi_world_lock);
    pmi_world_stop();
    pthread_mutex_lock(&pmi_registry_lock);
    for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) pthread_mutex_lock(&h->lock);
    pthread_rwlock_wrlock(&pmi_exit_lock);
    pthread_rwlock_wrlock(&pmi_unmap_lock);
}

static void pmi_fork_parent(void) {
    pthread_rwlock_unlock(&pmi_unmap_lock);
    pthread_rwlock_unlock(&pmi_exit_lock);
    for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&pmi_registry_lock);
    pmi_world_resume();
    pthread_mutex_unlock(&pmi_world_lock);
}

/* The child's one thread has another thread id than the one that locked: glibc's rwlock unlock would take
   it for a reader. Everything is quiescent and we are alone, so the locks are initialised afresh. */
static void pmi_heap_destroy_now(pmi_heap_t* h);

static void pmi_fork_child(void) {
    /* A thread may have raised a bracket count after pmi_world_stop saw it at zero, only to see the world
       stopped and lower it again: the child copied that moment, and has no thread to lower it. Nobody is
       inside a bracket in the child, so every count is zero. (The TSan harness's fork test found this.) */
    for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) {
        for (int i = 0; i < PMI_STRIPES; i++) atomic_store(&h->stripes[i].active, 0);
    }
    /* The other threads' slots died with them (their counts stay, as at a thread exit); this thread keeps
       its own. membarrier's registration is the process's: the child asks for its own, alone. */
    pmi_fences_choose();
    if (pmi_fences == PMI_FENCE_SEQ_CST && pmi_thread.stripe != PMI_NO_SLOT)
        pmi_thread.stripe = PMI_OWNED * (unsigned)sizeof(pmi_stripe_t);
    const unsigned slot = pmi_thread.stripe == PMI_NO_SLOT ? PMI_OWNED : pmi_slot_of(pmi_thread.stripe);
    atomic_store(&pmi_slots_taken, slot < PMI_OWNED ? 1u << slot : 0u);
    pthread_rwlock_init(&pmi_unmap_lock, NULL);
    pthread_rwlock_init(&pmi_exit_lock, NULL);
    for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&pmi_registry_lock, NULL);
    pmi_world_resume();
    pthread_mutex_init(&pmi_world_lock, NULL);
    /* A close, or the free of a closed heap's last block, may have decided to release a heap and been stopped before
       mimalloc's heap was destroyed: pmi_heap_try_release takes the world lock, which this fork held. The thread
       that would have gone on is not in the child, and nothing there is left to free into the heap: the child
       releases it now (a review found 147 of 300 children of a process that closed heaps in two threads keeping a
       closed, empty heap for good: tests/children/fork_during_close.py). */
    for (pmi_heap_t* h = pmi_registry; h != NULL; h = h->next) {
        if (h->is_main || !pmi_is_closed(h) || atomic_load(&h->destroyed) || pmi_live_sum(h) != 0) continue;
        atomic_store(&h->released, 1);
        pmi_heap_destroy_now(h);
    }
}

/* -- heaps ----------------------------------------------------------------------------------------- */

/* A zeroed wrapper, aligned to its stripes' cache lines; NULL if out of memory. The caller brackets it (below). */
static pmi_heap_t* pmi_wrapper_alloc(void) {
    void* p = NULL;
    if (posix_memalign(&p, 64, sizeof(pmi_heap_t)) != 0) return NULL;
    return (pmi_heap_t*)memset(p, 0, sizeof(pmi_heap_t));
}

/* The heap wrappers and the report buffers (pmi_meta_realloc) come from the C library's allocator inside a world
   bracket, as our calls into mimalloc are made: a fork waits until no thread is inside one (pmi_fork_prepare stops
   the world), so the child never inherits an allocator lock held by a thread it does not have. glibc's fork takes
   its own malloc's locks, but not every malloc does: under GCC 12's AddressSanitizer, whose allocator has no fork
   handlers, a forked child of broad_stress.py hung once the wrappers were allocated outside the bracket. Not
   bracketed: a walk's arrays (pmi_grow, which runs while a walk of the main heap has the world stopped itself, so a
   bracket would wait for its own thread) and the records of deferred frees (pmi_defer). Under glibc that is safe;
   under a malloc without fork handlers a fork can copy its lock held by one of them (broad_stress.py does not fork
   under a memory checker). */
static pmi_heap_t* pmi_wrapper_new(void) {
    pmi_world_enter();
    pmi_heap_t* h = pmi_wrapper_alloc();
    pmi_world_leave();
    if (h == NULL) return NULL;
    pthread_mutex_init(&h->lock, NULL);
    atomic_store(&h->refs, 1);
    return h;
}

static void pmi_wrapper_free(pmi_heap_t* h) {
    pthread_mutex_destroy(&h->lock);
    pmi_world_enter();
    free(h);
    pmi_world_leave();
}

/* -- options pymimalloc refuses ------------------------------------------------------------------------
   Values of these options break mimalloc v3.4.3 inside a Python process. pmi_init puts each back to the
   only value pymimalloc accepts, before mimalloc serves pymimalloc anything, on every path that starts it
   (import pymimalloc, PYMIMALLOC_INSTALL at interpreter start), and keeps one message per option put back
   for Python to show (pmi_refused_report). pymimalloc.options.REFUSED is read from this table. */
static const struct { mi_option_t option; const char* name; long safe; const char* why; } pmi_refused[] = {
    {mi_option_destroy_on_exit, "destroy_on_exit", 0,
     "mimalloc's mi_process_done then re-enters a lock it holds (through mi_heap_free) and every process that "
     "imported pymimalloc hangs at exit"},
    /* Without it, v3.4.3 keeps no list of abandoned OS pages (huge and over-aligned blocks whose thread
       exited or gave them up) and no walk can find their blocks (arena.c, _mi_arenas_page_abandon). */
    {mi_option_visit_abandoned, "visit_abandoned", 1,
     "pymimalloc turns it on at import: without it mimalloc keeps no list of abandoned OS pages (huge and "
     "over-aligned blocks) and walks cannot report their blocks"},
    {mi_option_guarded_sample_rate, "guarded_sample_rate", 0,
     "guarded allocation of large blocks fails mimalloc's own assertion (alloc.c:827, _mi_theap_malloc_guarded) "
     "in checked builds"},
};
#define PMI_REFUSED_COUNT (sizeof(pmi_refused) / sizeof(pmi_refused[0]))
static char pmi_refused_messages[2048];  /* what pmi_init put back, one line each; handed out once */

static void pmi_refused_put_back(void) {
    size_t used = 0;
    for (size_t i = 0; i < PMI_REFUSED_COUNT; i++) {
        char variable[64];
        snprintf(variable, sizeof variable, "MIMALLOC_%s", pmi_refused[i].name);
        for (char* c = variable; *c; c++) *c = (char)toupper((unsigned char)*c);
        const char* asked = getenv(variable);
        const long value = mi_option_get(pmi_refused[i].option);
        if (value == pmi_refused[i].safe) continue;
        mi_option_set(pmi_refused[i].option, pmi_refused[i].safe);
        if (asked == NULL && pmi_refused[i].option == mi_option_visit_abandoned) continue;  /* the default */
        char asked_text[80];
        if (asked != NULL) snprintf(asked_text, sizeof asked_text, "%s=%s", variable, asked);
        else snprintf(asked_text, sizeof asked_text, "%ld", value);
        const int n = snprintf(pmi_refused_messages + used, sizeof pmi_refused_messages - used,
                               "pymimalloc set mimalloc option '%s' to %ld, not %s: %s\n", pmi_refused[i].name,
                               pmi_refused[i].safe, asked_text, pmi_refused[i].why);
        if (n > 0 && (size_t)n < sizeof pmi_refused_messages - used) used += (size_t)n;
    }
}

const char* pmi_refused_report(void) {
    static char taken[sizeof pmi_refused_messages];
    memcpy(taken, pmi_refused_messages, sizeof taken);
    pmi_refused_messages[0] = '\0';
    return taken;
}

size_t pmi_refused_count(void) { return PMI_REFUSED_COUNT; }

const char* pmi_option_refusal(int option, long value) {
    for (size_t i = 0; i < PMI_REFUSED_COUNT; i++) {
        if ((int)pmi_refused[i].option == option && value != pmi_refused[i].safe) return pmi_refused[i].why;
    }
    if (option == (int)mi_option_max_vabits && value != mi_option_get(mi_option_max_vabits))
        return "it is read once, when mimalloc starts, and pymimalloc does not support it";
    return NULL;
}
const char* pmi_refused_name(size_t i) { return i < PMI_REFUSED_COUNT ? pmi_refused[i].name : NULL; }
long pmi_refused_safe(size_t i) { return i < PMI_REFUSED_COUNT ? pmi_refused[i].safe : 0; }
const char* pmi_refused_why(size_t i) { return i < PMI_REFUSED_COUNT ? pmi_refused[i].why : NULL; }

/* pmi_init's first part. A retry runs it again until it published the main heap's wrapper, after which nothing fails. */
static int pmi_start(void) {
    pmi_fences_choose();  /* before any glue call: no thread is inside a bracket yet */
    if (!pmi_slot_key_made) pmi_slot_key_made = (pthread_key_create(&pmi_slot_key, &pmi_slot_give_back) == 0);
    pmi_refused_put_back();  /* first: before anything below allocates */
    pmi_option_defaults();  /* before mimalloc maps its first arena (pmi_mimalloc.c says why) */
    mi_register_error(&pmi_on_error, NULL);
    pmi_arena_first();  /* as mimalloc would at its first allocation (pmi_mimalloc.c) */
    if (pmi_starved()) return PMI_ENOMEM;
    pmi_arenas_bin_first_chunk();  /* mimalloc has mapped its first arena now (pmi_mimalloc.c says why) */
    pmi_heap_t* const main_wrapper = pmi_wrapper_alloc();
    if (main_wrapper == NULL) return PMI_ENOMEM;
    pmi_main_wrapper = main_wrapper;
    pthread_mutex_init(&pmi_main_wrapper->lock, NULL);
    pmi_main_wrapper->heap = mi_heap_main();
    /* v3.4.3 never writes the size and version header of the main heap's statistics (init.c sets up the
       subprocess's, heap.c those of new heaps), so mi_heap_stats_get_json(mi_heap_main()) always fails.
       The header is what mi_heap_new writes into its own heaps. */
    mi_stats_t* main_stats = &pmi_main_wrapper->heap->stats;
    if (main_stats->size != sizeof(mi_stats_t)) mi_stats_header_init(main_stats);
    pmi_main_wrapper->is_main = true;
    atomic_store(&pmi_main_wrapper->refs, 1);  /* the module's own reference: never freed */
    pmi_registry_add(pmi_main_wrapper);
    return PMI_OK;
}

static bool pmi_fork_hooked;  /* pthread_atfork took the fork handlers */

int pmi_init(void) {
    if (pmi_main_wrapper == NULL) {
        const int status = pmi_start();
        if (status != PMI_OK) return status;
    }
    /* Tried again on every call until it worked: an import retried after this failed must not succeed without the
       handlers (a fork would then copy locks and heaps mid-change). */
    if (!pmi_fork_hooked) {
        if (pthread_atfork(&pmi_fork_prepare, &pmi_fork_parent, &pmi_fork_child) != 0) return PMI_ENOMEM;
        pmi_fork_hooked = true;
    }
    return PMI_OK;
}

/* Drop one of the counts that keep the wrapper alive (`refs` or `pending`), and free the wrapper if nothing
   can reach it any more: no reference, no thread finishing it off, its mimalloc heap released (so it is
   closed and nothing in it is alive) and no call in flight. The decision is taken under the heap's lock,
   so exactly one thread takes it; the caller must not touch `h` afterwards. Nothing can start a new call
   once all of these are zero (every caller holds one of them), so after the wait nothing else holds `h`. */
static void pmi_heap_drop(pmi_heap_t* h, atomic_intptr_t* count) {
    pthread_mutex_lock(&h->lock);
    atomic_fetch_sub(count, 1);
    bool dead = false;
    if (!h->is_main && atomic_load(&h->released) && atomic_load(&h->refs) == 0 && atomic_load(&h->pending) == 0
        && !atomic_load(&h->dead)) {
        /* A free that saw the heap closed raises `pending` before it leaves (a release store). Its bracket
           is visible here without a heavy fence: `released` was set by a thread that read this free's count
           of frees (an acquire of its release store, which came after the bracket's). */
        pmi_wait_drained_fenced(h);
        dead = (atomic_load(&h->pending) == 0);
        if (dead) atomic_store(&h->dead, 1);
    }
    pthread_mutex_unlock(&h->lock);
    if (dead) {
        pmi_registry_remove(h);
        pmi_wrapper_free(h);
    }
}

static void pmi_heap_unref(pmi_heap_t* h) { pmi_heap_drop(h, &h->refs); }

pmi_heap_t* pmi_heap_new_in_arena(void* arena_id) {
    if (arena_id != NULL && !pmi_arena_known(arena_id)) return NULL;
    pmi_heap_t* h = pmi_wrapper_new();
    if (h == NULL) return NULL;
    pthread_mutex_lock(&pmi_world_lock);  /* mi_heap_new allocates in the main heap */
    h->heap = mi_heap_new_in_arena((mi_arena_id_t)arena_id);
    pthread_mutex_unlock(&pmi_world_lock);
    if (h->heap == NULL) { pmi_wrapper_free(h); return NULL; }
    pmi_registry_add(h);
    return h;
}

pmi_heap_t* pmi_heap_new(void) { return pmi_heap_new_in_arena(NULL); }

mi_heap_t* pmi_heap_new_unwrapped(void) {
    pthread_mutex_lock(&pmi_world_lock);  /* as pmi_heap_new_in_arena */
    mi_heap_t* heap = mi_heap_new();
    if (heap != NULL) pmi_heap_python_policy(heap);  /* before any thread has a theap of it */
    pthread_mutex_unlock(&pmi_world_lock);
    return heap;
}

pmi_heap_t* pmi_heap_main_handle(void) {
    atomic_fetch_add(&pmi_main_wrapper->refs, 1);
    return pmi_main_wrapper;
}

/* mimalloc's part of a closed heap with nothing alive goes, with the OS pages mi_heap_destroy leaves behind
   (pmi_mimalloc.c). The caller set `released` and holds the world and exit locks, or is a fork's child, alone. */
static void pmi_heap_destroy_now(pmi_heap_t* h) {
    const pmi_heap_destroying_fn destroying = atomic_load(&pmi_heap_destroying);
    if (destroying != NULL) destroying(h->heap);
    pmi_heap_free_os_pages(h->heap);
    mi_heap_destroy(h->heap);
    atomic_store(&h->destroyed, 1);
}

/* Destroy the mimalloc heap once it is closed and nothing in it is alive. Called by the closer and by
   whoever frees the last live block; the exchange on `released` lets exactly one of them do it. Every
   free has finished with mimalloc before it counts itself out, so nothing else uses the heap now. */
static bool pmi_heap_try_release(pmi_heap_t* h, bool closer) {
    if (h->is_main || !pmi_is_closed(h)) return false;
    /* The closer stored `state`: frees that did not see it are the light side of the handshake. A free that
       saw it is here too, and a seq_cst fence orders it against the other such frees. */
    if (closer) pmi_heavy_fence();
    else atomic_thread_fence(memory_order_seq_cst);
    if (pmi_live_sum(h) != 0) return false;
    if (atomic_exchange(&h->released, 1) != 0) return false;
    pthread_mutex_lock(&pmi_world_lock);  /* not during a walk, heap creation or fork */
    /* nor while a thread that used the heap exits: mimalloc's thread-done still updates the statistics of
       its theaps while mi_heap_free_theaps merges them (a race ThreadSanitizer found, theap.c) */
    pthread_rwlock_wrlock(&pmi_exit_lock);
    pmi_heap_destroy_now(h);
    pthread_rwlock_unlock(&pmi_exit_lock);
    pthread_mutex_unlock(&pmi_world_lock);
    return true;
}

int pmi_heap_close(pmi_heap_t* h, int mode) {
    if (h->is_main) return PMI_EMAIN;
    pthread_mutex_lock(&h->lock);
    int status;
    if (pmi_is_closed(h)) status = PMI_ECLOSED;
    else if (h->freeze_depth > 0) status = PMI_EFROZEN;
    else {
        pmi_flag_raise(h, PMI_HEAP_CLOSING);
        pmi_schedule_noise();
        pmi_wait_drained(h);
        pmi_schedule_noise();  /* a call that starts now finds the heap closing, and must wait for the decision */
        /* Nothing can allocate now: allocations wait for this decision. Live blocks can only fall. */
        if (atomic_load(&h->pins) != 0) status = PMI_EPINNED;
        else if (mode == PMI_CLOSE_DESTROY && pmi_live_sum(h) != 0) status = PMI_EBUSY;
        else { pmi_flag_raise(h, PMI_HEAP_CLOSED); status = PMI_DEFERRED; }
        pmi_flag_lower(h, PMI_HEAP_CLOSING);
    }
    pthread_mutex_unlock(&h->lock);
    pmi_schedule_noise();
    if (status == PMI_DEFERRED && pmi_heap_try_release(h, true)) status = PMI_DESTROYED;
    return status;
}

void pmi_heap_release(pmi_heap_t* h) {
    if (!h->is_main && !pmi_is_closed(h)) (void)pmi_heap_close(h, PMI_CLOSE_AUTO);
    pmi_heap_unref(h);
}

int pmi_heap_state(pmi_heap_t* h) {
    const int flags = pmi_flags(h);
    if (flags & PMI_HEAP_CLOSED) return PMI_STATE_CLOSED;
    return (flags & PMI_HEAP_FROZEN) ? PMI_STATE_FROZEN : PMI_STATE_OPEN;
}

int pmi_heap_is_main(pmi_heap_t* h) { return h->is_main; }
int pmi_heap_released(pmi_heap_t* h) { return atomic_load(&h->released); }
uintptr_t pmi_heap_id(pmi_heap_t* h) { return (uintptr_t)h->heap; }
static size_t pmi_stripes_sum(pmi_heap_t* h, size_t offset) {
    intptr_t sum = 0;
    for (int i = 0; i < PMI_STRIPES; i++) {
        sum += atomic_load_explicit((atomic_intptr_t*)((char*)&h->stripes[i] + offset), memory_order_acquire);
    }
    return sum < 0 ? 0 : (size_t)sum;  /* a free counted before its allocation was read: see pmi_heap.h */
}
size_t pmi_heap_live_blocks(pmi_heap_t* h) {
    const intptr_t live = pmi_live_sum(h);
    return live < 0 ? 0 : (size_t)live;  /* a free counted before its allocation was read: see pmi_heap.h */
}
size_t pmi_heap_live_bytes(pmi_heap_t* h) { return pmi_stripes_sum(h, offsetof(pmi_stripe_t, live_bytes)); }
size_t pmi_heap_total_blocks(pmi_heap_t* h) { return pmi_stripes_sum(h, offsetof(pmi_stripe_t, total_blocks)); }
size_t pmi_heap_huge_bytes(pmi_heap_t* h) { return pmi_stripes_sum(h, offsetof(pmi_stripe_t, huge_bytes)); }
/* A stripe that allocated or freed says so by its totals; one that only resized blocks of other threads
   (Block.realloc, numpy's realloc) by its own mark, not its live bytes: they may be back at zero while it
   still holds a peak of its own. */
int pmi_heap_peak_exact(pmi_heap_t* h) {
    int counting = 0;  /* stripes that ever counted a block in, out, or resized */
    for (int i = 0; i < PMI_STRIPES; i++) {
        counting += atomic_load_explicit(&h->stripes[i].total_blocks, memory_order_acquire) != 0
                    || atomic_load_explicit(&h->stripes[i].freed_blocks, memory_order_acquire) != 0
                    || atomic_load_explicit(&h->stripes[i].touched, memory_order_acquire) != 0;
    }
    return counting <= 1;
}
size_t pmi_heap_peak_bytes(pmi_heap_t* h) {
    const size_t peak = pmi_stripes_sum(h, offsetof(pmi_stripe_t, peak_bytes));
    const size_t live = pmi_heap_live_bytes(h);
    return peak < live ? live : peak;  /* a stripe's negative share can make the sum of peaks the lower */
}

int pmi_heap_collect(pmi_heap_t* h, bool force) {
    const int status = pmi_enter_alloc(h);
    if (status != PMI_OK) return status;
    pmi_heap_collect_reused(h->heap);
    mi_heap_collect(h->heap, force);
    pmi_leave(h);
    return PMI_OK;
}

int pmi_heap_contains(pmi_heap_t* h, uintptr_t address) {
    if (pmi_is_closed(h)) return PMI_ECLOSED;
    return pmi_heap_of(address) == (uintptr_t)h->heap ? 1 : 0;  /* compares addresses; never reads h->heap */
}

/* -- blocks ---------------------------------------------------------------------------------------- */

/* tracemalloc sees every Block under a domain of its own. These may take the GIL when tracemalloc is
   tracing, so they run outside every bracket: fork and walks never wait for a thread that waits for
   the GIL. When tracemalloc is off they are a load and a branch inside CPython. */
static inline void pmi_track(void* p, size_t size) {
    (void)PyTraceMalloc_Track(PMI_TRACEMALLOC_DOMAIN, (uintptr_t)p, size);
}
static inline void pmi_untrack(void* p) {
    (void)PyTraceMalloc_Untrack(PMI_TRACEMALLOC_DOMAIN, (uintptr_t)p);
}

/* Inside a bracket: count a new block (or array data) of `size` bytes in the calling thread's stripe. */
static inline void pmi_count_mark(pmi_stripe_t* s) {
    if (__builtin_expect(atomic_load_explicit(&s->touched, memory_order_relaxed) == 0, 0))
        atomic_store_explicit(&s->touched, 1, memory_order_relaxed);  /* only ever 0 -> 1: any writer may */
}

static inline void pmi_count_peak(unsigned slot, pmi_stripe_t* s, intptr_t bytes) {
    if (__builtin_expect(bytes <= atomic_load_explicit(&s->peak_bytes, memory_order_relaxed), 1)) return;
    intptr_t peak = atomic_load_explicit(&s->peak_bytes, memory_order_relaxed);
    if (slot < PMI_OWNED) atomic_store_explicit(&s->peak_bytes, bytes, memory_order_relaxed);
    else while (bytes > peak && !atomic_compare_exchange_weak(&s->peak_bytes, &peak, bytes)) {}
}

/* The bytes of a block counted as `size` that go to its heap's huge bytes: blocks asked for above 512 KiB, which
   mimalloc v3 gives a page of their own (MI_LARGE_MAX_OBJ_SIZE). mimalloc's own count of them (malloc_huge) counts a
   free only in builds with MI_STAT, and then into the freeing thread's default heap: Heap.stats() read the bytes of
   every huge block ever allocated (a review of 2026-12-06). */
#define PMI_HUGE_COUNTED ((size_t)512 * 1024)
static inline intptr_t pmi_huge_part(size_t size) { return size > PMI_HUGE_COUNTED ? (intptr_t)size : 0; }

/* The fast paths' counts leave the huge bytes out: their blocks are never huge (mimalloc's small fast path, and a
   free that empties no page: a huge block is alone on its page). 4.5 instructions a pair of the objects kernel. */
static inline void pmi_count_alloc_small_in(unsigned slot, pmi_stripe_t* s, size_t size) {
    pmi_bump(slot, &s->total_blocks, 1, memory_order_relaxed);  /* marks the stripe as counting by itself */
    pmi_count_peak(slot, s, pmi_add(slot, &s->live_bytes, (intptr_t)size, memory_order_relaxed));
}

static inline void pmi_count_alloc_in(unsigned slot, pmi_stripe_t* s, size_t size) {
    pmi_count_alloc_small_in(slot, s, size);
    if (__builtin_expect(size > PMI_HUGE_COUNTED, 0)) pmi_bump(slot, &s->huge_bytes, (intptr_t)size, memory_order_relaxed);
}

static inline void pmi_count_alloc(pmi_heap_t* h, unsigned slot, size_t size) {
    pmi_count_alloc_in(slot, &h->stripes[slot], size);
}

static inline void pmi_count_resize(pmi_heap_t* h, unsigned slot, size_t old_size, size_t new_size) {
    pmi_stripe_t* s = &h->stripes[slot];
    pmi_count_mark(s);
    pmi_count_peak(slot, s, pmi_add(slot, &s->live_bytes, (intptr_t)new_size - (intptr_t)old_size, memory_order_relaxed));
    const intptr_t huge = pmi_huge_part(new_size) - pmi_huge_part(old_size);
    if (__builtin_expect(huge != 0, 0)) pmi_bump(slot, &s->huge_bytes, huge, memory_order_relaxed);
}

/* Inside a bracket, once mimalloc freed the memory: count it out of the stripe `s` (pmi_count_free says what else). */
static inline void pmi_count_out_small_in(unsigned slot, pmi_stripe_t* s, size_t size) {
    pmi_bump(slot, &s->live_bytes, -(intptr_t)size, memory_order_relaxed);
    pmi_bump(slot, &s->freed_blocks, 1, memory_order_release);  /* after mimalloc's free: see pmi_heap_drop */
}

static inline void pmi_count_out_in(unsigned slot, pmi_stripe_t* s, size_t size) {
    if (__builtin_expect(size > PMI_HUGE_COUNTED, 0)) pmi_bump(slot, &s->huge_bytes, -(intptr_t)size, memory_order_relaxed);
    pmi_count_out_small_in(slot, s, size);
}

static inline void pmi_count_out(pmi_heap_t* h, unsigned slot, size_t size) {
    pmi_count_out_in(slot, &h->stripes[slot], size);
}

/* pmi_count_out, then whether the heap is closed: if so, the caller holds `pending` (so `h` outlives the bracket)
   and must call pmi_heap_finish once it left it. The count of frees (a release), a light fence, then the load of
   the flags; a close raises CLOSED, a heavy fence, then adds the counts up: either this free sees the heap closed
   or the close sees this free (pmi_heap.h). */
static inline bool pmi_count_free(pmi_heap_t* h, unsigned slot, size_t size) {
    pmi_count_out(h, slot, size);
    if (__builtin_expect(slot < PMI_OWNED, 1)) pmi_light_fence();  /* the shared stripe's add was a barrier */
    if (__builtin_expect(!pmi_is_closed(h), 1)) return false;
    atomic_fetch_add(&h->pending, 1);
    return true;
}

/* After a free on a closed heap: release its mimalloc heap if that was the last block, then drop `pending`
   (which may free the wrapper: `h` is gone afterwards). */
static void pmi_heap_finish(pmi_heap_t* h) {
    (void)pmi_heap_try_release(h, false);
    pmi_heap_drop(h, &h->pending);
}

/* Why this thread's last allocation failed (pmi_thread.last_failure): read right after the failure, whatever the
   heap did since. */
int pmi_allocation_failure(void) { return pmi_thread.last_failure; }

static inline pmi_block_t* pmi_record_fill(pmi_block_t* b, pmi_heap_t* h, void* data, size_t size) {
    b->data = data;
    b->size = size;
    b->owner = h;
    b->next_deferred = NULL;
    return b;
}

/* pmi_block_alloc's common case, as pmi_object_malloc_fast's: NULL, with nothing done, where it does not apply */
static inline __attribute__((always_inline)) void* pmi_block_alloc_fast(pmi_heap_t* h, size_t size) {
    const unsigned stripe = pmi_thread_self()->stripe;  /* none yet: PMI_NO_SLOT, above every owned stripe */
    if (__builtin_expect(stripe >= PMI_OWNED_STRIPES, 0)) return NULL;
    const unsigned slot = pmi_slot_of(stripe);
    pmi_stripe_t* const s = pmi_stripe_at(h, stripe);
    void* p = NULL;
    pmi_bracket_in(slot, &s->active);
    if (__builtin_expect(pmi_may_allocate(h), 1)) {
        p = pmi_fast_malloc_small(h->heap, size);
        if (__builtin_expect(p != NULL, 1)) pmi_count_alloc_small_in(slot, s, size);
    }
    pmi_bracket_out(slot, &s->active);
    return p;
}

pmi_block_t* pmi_block_alloc(pmi_heap_t* h, pmi_block_t* into, size_t size, size_t alignment, bool zero) {
    if (alignment == 0 && !zero) {
        void* const p = pmi_block_alloc_fast(h, size);
        if (__builtin_expect(p != NULL, 1)) {
            pmi_track(p, size);
            return pmi_record_fill(into, h, p, size);
        }
    }
    const unsigned slot = pmi_slot();
    const int status = pmi_enter_alloc_at(h, slot);
    if (status != PMI_OK) { pmi_thread.last_failure = status; return NULL; }
    void* p;
    if (alignment == 0) p = (zero ? mi_heap_zalloc(h->heap, size) : mi_heap_malloc(h->heap, size));
    else p = (zero ? mi_heap_zalloc_aligned(h->heap, size, alignment) : mi_heap_malloc_aligned(h->heap, size, alignment));
    if (p != NULL) pmi_count_alloc(h, slot, size);
    pmi_leave_at(h, slot);
    if (p == NULL) { pmi_thread.last_failure = PMI_ENOMEM; return NULL; }
    pmi_track(p, size);
    return pmi_record_fill(into, h, p, size);
}

pmi_block_t* pmi_block_realloc(pmi_block_t* from, pmi_block_t* into, size_t size) {
    pmi_heap_t* h = from->owner;
    void* const data = from->data;
    if (data == NULL) { pmi_thread.last_failure = PMI_ECLOSED; return NULL; }
    const unsigned slot = pmi_slot();
    const int status = pmi_enter_alloc_at(h, slot);
    if (status != PMI_OK) { pmi_thread.last_failure = status; return NULL; }
    void* p = mi_heap_realloc(h->heap, data, size);
    if (p != NULL) pmi_count_resize(h, slot, from->size, size);
    pmi_leave_at(h, slot);
    if (p == NULL) { pmi_thread.last_failure = PMI_ENOMEM; return NULL; }
    from->data = NULL;
    pmi_untrack(data);
    pmi_track(p, size);
    return pmi_record_fill(into, h, p, size);
}

/* Put off freeing `data` (counted as `size` bytes) to the heap's last thaw. The deferred record lives in
   the C library's heap. Out of memory even for its 32 bytes, the data leaks: the only safe choice, since
   a walk may have reported its address. */
static void pmi_release_deferred(pmi_heap_t* h);

static void pmi_defer(pmi_heap_t* h, void* data, size_t size) {
    pmi_block_t* b = (pmi_block_t*)malloc(sizeof(pmi_block_t));
    if (b == NULL) return;
    pmi_record_fill(b, h, data, size);
    /* Once pushed, a thaw in another thread may free the data and finish the heap: hold it until done. */
    atomic_fetch_add(&h->pending, 1);
    pmi_block_t* head = atomic_load(&h->deferred);
    do { b->next_deferred = head; } while (!atomic_compare_exchange_weak(&h->deferred, &head, b));
    pmi_schedule_noise();
    /* If the heap thawed meanwhile, nobody else will look at the list again: drain it. */
    if (!pmi_is_frozen(h)) pmi_release_deferred(h);
    pmi_heap_drop(h, &h->pending);
}

/* The size the glue counts for a live block of numpy's data or a Python object: its usable size, by the one
   function every count in and out uses (pmi_page_block_usable; in an ASan build that is the whole block, where
   mi_usable_size would decode the padding: counted in by one and out by the other, the counts would drift). */
static inline size_t pmi_counted_size(const void* p) { return pmi_page_block_usable(_mi_ptr_page(p), p); }

#define PMI_BY_USABLE_SIZE ((size_t)-1)

/* The common case of every glue free (a Block, numpy's data, a Python object), which neither waits nor calls out of
   line: this thread owns a stripe, the heap raises no flag (it is open, not frozen, no close is deciding, the world
   runs) and mimalloc's free of the block calls nothing (pmi_page_free_local). Frees the block at the start of
   `page`'s block `p` and counts it out as `size` bytes (PMI_BY_USABLE_SIZE: its usable size), or returns false with
   nothing done: the caller then takes the whole glue, as it does for every free into a closed heap.
   The flags are read once, at the start of the bracket, rather than after the count as pmi_count_free reads
   whether the heap is closed: with no close deciding (no CLOSING) when the bracket began, a close that starts later
   waits for the bracket before it decides, and adds up the counts after it, so the heap stays open until this free
   has left (pmi_heap.h). `me` is &pmi_thread. */
static inline __attribute__((always_inline)) bool pmi_release_fast(pmi_heap_t* h, pmi_thread_t* me, struct mi_page_s* page,
                                                                   void* p, size_t size) {
    const unsigned stripe = me->stripe;  /* none yet: PMI_NO_SLOT, above every owned stripe */
    if (__builtin_expect(stripe >= PMI_OWNED_STRIPES, 0)) return false;
    const unsigned slot = pmi_slot_of(stripe);
    pmi_stripe_t* const s = pmi_stripe_at(h, stripe);
    pmi_bracket_in(slot, &s->active);
    const size_t counted = (size == PMI_BY_USABLE_SIZE ? pmi_page_block_usable(page, p) : size);
    if (__builtin_expect(pmi_flags(h) == 0, 1) && __builtin_expect(pmi_page_free_local(page, p), 1)) {
        pmi_count_out_small_in(slot, s, counted);  /* a huge block empties its page: never freed here */
        pmi_bracket_out(slot, &s->active);
        return true;
    }
    pmi_bracket_out(slot, &s->active);
    return false;
}

/* Free `data` of heap `h`, counted as `size` bytes (PMI_BY_USABLE_SIZE: its usable size, numpy's data), or defer it
   while the heap is frozen. The common case first (pmi_release_fast). */
static __attribute__((noinline)) void pmi_release_data_slow(pmi_heap_t* h, void* data, size_t size);
static inline __attribute__((always_inline)) void pmi_release_data(pmi_heap_t* h, void* data, size_t size) {
    if (__builtin_expect(!pmi_release_fast(h, pmi_thread_self(), _mi_ptr_page(data), data, size), 0))
        pmi_release_data_slow(h, data, size);
}

static __attribute__((noinline)) void pmi_release_data_slow(pmi_heap_t* h, void* data, size_t size) {
    const unsigned slot = pmi_slot();
    if (!pmi_enter_free_at(h, slot)) {
        pmi_defer(h, data, size == PMI_BY_USABLE_SIZE ? pmi_counted_size(data) : size);  /* alive, heap frozen: safe */
        return;
    }
    if (size == PMI_BY_USABLE_SIZE) size = pmi_counted_size(data);
    mi_free(data);
    const bool closed = pmi_count_free(h, slot, size);
    pmi_leave_at(h, slot);
    if (closed) pmi_heap_finish(h);
}

void pmi_block_release(pmi_block_t* b) {
    void* const data = b->data;
    if (data == NULL) return;
    b->data = NULL;
    pmi_untrack(data);
    pmi_release_data(b->owner, data, b->size);
}

/* The caller keeps `h` alive (a reference or `pending`) while this runs. */
static void pmi_release_deferred(pmi_heap_t* h) {
    pmi_block_t* b = atomic_exchange(&h->deferred, NULL);
    while (b != NULL) {
        pmi_block_t* next = b->next_deferred;
        void* const data = b->data;
        const size_t size = b->size;
        free(b);
        pmi_schedule_noise();
        pmi_release_data(h, data, size);  /* defers again if a new freeze began */
        b = next;
    }
}

/* -- raw data for numpy (NEP 49); counted by usable size, since numpy's realloc gives no old size.
      numpy traces array data in tracemalloc itself (domain 389047), so these do not. -------------- */

/* One body for numpy's data and Python objects (pmi_object_malloc, the hook's MEM and OBJ domains under
   python_objects()): an uninitialised block goes through mimalloc's fast path inlined, with its counted size read
   from the page it came from; a zeroed one through mi_heap_zalloc. NULL if the heap is closed or frozen (numpy
   reports MemoryError; the hook goes to Python's own heap) or out of memory. */
static inline __attribute__((always_inline)) void* pmi_counted_alloc(pmi_heap_t* h, pmi_thread_t* me, size_t size, bool zero) {
    const unsigned slot = pmi_slot_in(me);
    if (pmi_enter_alloc_at(h, slot) != PMI_OK) return NULL;
    size_t counted = 0;
    void* p;
    if (zero) {
        p = mi_heap_zalloc(h->heap, size);
        if (p != NULL) counted = pmi_counted_size(p);
    }
    else p = pmi_fast_malloc_counted(h->heap, size, &counted);
    if (p != NULL) pmi_count_alloc(h, slot, counted);
    pmi_leave_at(h, slot);
    return p;
}

/* Python objects (the hook's MEM and OBJ domains under python_objects(); inlined into the hook by link-time
   optimisation). The common case first, which neither waits nor calls out of line: this thread owns a stripe,
   neither the heap nor the world refuses, and mimalloc's fast path has a block. Where any of that fails, nothing
   was done and the whole glue runs (pmi_counted_alloc_slow): the compiler then keeps the common case free of
   what only the rare one needs (measured with benchmarks/objects_instructions.py). */
static __attribute__((noinline)) void* pmi_counted_alloc_slow(pmi_heap_t* h, size_t size, bool zero) {
    return pmi_counted_alloc(h, &pmi_thread, size, zero);
}

inline __attribute__((always_inline)) void* pmi_object_malloc_fast(pmi_heap_t* h, pmi_thread_t* me, size_t size) {
    const unsigned stripe = me->stripe;  /* none yet: PMI_NO_SLOT, above every owned stripe */
    if (__builtin_expect(stripe < PMI_OWNED_STRIPES, 1)) {
        const unsigned slot = pmi_slot_of(stripe);
        pmi_stripe_t* const s = pmi_stripe_at(h, stripe);
        pmi_bracket_in(slot, &s->active);
        if (__builtin_expect(pmi_may_allocate(h), 1)) {
            size_t counted;
            void* const p = pmi_fast_malloc_small_counted(h->heap, size, &counted);
            if (__builtin_expect(p != NULL, 1)) {
                pmi_count_alloc_small_in(slot, s, counted);
                pmi_bracket_out(slot, &s->active);
                return p;
            }
        }
        pmi_bracket_out(slot, &s->active);
    }
    return NULL;
}

inline __attribute__((always_inline)) void* pmi_object_malloc(pmi_heap_t* h, pmi_thread_t* me, size_t size) {
    void* const p = pmi_object_malloc_fast(h, me, size);
    return p != NULL ? p : pmi_counted_alloc_slow(h, size, false);
}

/* numpy's data (pmi_numpy.c; inlined there by link-time optimisation): a small uninitialised block through the common
   case of a Python object's (above), which takes it without entering the whole glue; zeroed and larger ones, which
   mimalloc's fast path does not serve, straight through the whole glue, out of line (inlined, it cost every call the
   saving of six registers). np.empty(64 B) inside numpy_allocator(): 1,974 -> 1,897 instructions, with the capsule's
   name (pmi_numpy.c), against numpy's own handler's 1,819 (callgrind). */
inline __attribute__((always_inline)) void* pmi_data_alloc(pmi_heap_t* h, size_t size, bool zero) {
    if (__builtin_expect(zero || size > MI_SMALL_SIZE_MAX, 0)) return pmi_counted_alloc_slow(h, size, zero);
    return pmi_object_malloc(h, pmi_thread_self(), size);
}

void* pmi_data_realloc(pmi_heap_t* h, void* p, size_t size) {
    if (p == NULL) return pmi_data_alloc(h, size, false);
    /* `p` is alive, so the mimalloc heap is too, even if the heap was closed since */
    const unsigned slot = pmi_slot();
    if (!pmi_enter_free_at(h, slot)) return NULL;  /* frozen */
    const size_t old_usable = pmi_counted_size(p);
    void* q = mi_heap_realloc(h->heap, p, size);
    if (q != NULL) pmi_count_resize(h, slot, old_usable, pmi_counted_size(q));
    pmi_leave_at(h, slot);
    return q;
}

inline __attribute__((always_inline)) void pmi_data_free(pmi_heap_t* h, void* p) {
    if (p != NULL) pmi_release_data(h, p, PMI_BY_USABLE_SIZE);
}

/* pmi_release_data for a live block at the start of `page`'s block `p`, counted by its usable size as
   pmi_data_alloc counted it: the page found once by the hook serves both the size and the free (mi_usable_size
   and mi_free would each look it up again). The block is alive, so its page is. */
static __attribute__((noinline)) void pmi_object_free_slow(pmi_heap_t* h, struct mi_page_s* page, void* p) {
    const unsigned slot = pmi_slot();
    const size_t size = pmi_page_block_usable(page, p);
    if (!pmi_enter_free_at(h, slot)) {
        pmi_defer(h, p, size);  /* alive, heap frozen: safe */
        return;
    }
    pmi_page_free(page, p);
    const bool closed = pmi_count_free(h, slot, size);
    pmi_leave_at(h, slot);
    if (closed) pmi_heap_finish(h);
}

/* Its common case first (pmi_release_fast), else the whole glue. `me` is &pmi_thread. */
inline __attribute__((always_inline)) void pmi_object_free(pmi_heap_t* h, pmi_thread_t* me, struct mi_page_s* page, void* p) {
    if (__builtin_expect(!pmi_release_fast(h, me, page, p, PMI_BY_USABLE_SIZE), 0)) pmi_object_free_slow(h, page, p);
}

void pmi_heap_ref(pmi_heap_t* h) { atomic_fetch_add(&h->refs, 1); }
void pmi_heap_unref_public(pmi_heap_t* h) { pmi_heap_unref(h); }

/* -- freezing -------------------------------------------------------------------------------------- */

int pmi_heap_freeze(pmi_heap_t* h) {
    int status = PMI_OK;
    pthread_mutex_lock(&h->lock);
    if (pmi_is_closed(h)) status = PMI_ECLOSED;
    else if (h->freeze_depth++ == 0) {
        pmi_flag_raise(h, PMI_HEAP_FROZEN);
        pmi_schedule_noise();
        pmi_wait_drained(h);
    }
    pthread_mutex_unlock(&h->lock);
    return status;
}

/* Undo one freeze; true if that was the last, and the caller must then free what was deferred meanwhile
   (pmi_release_deferred), holding no lock a free may take: the heap can be closed as soon as the flag is down, and
   the free of its last block then releases it, which takes the world lock (pmi_heap_try_release). */
static bool pmi_heap_unfreeze(pmi_heap_t* h) {
    bool thawed = false;
    pthread_mutex_lock(&h->lock);
    if (h->freeze_depth > 0 && --h->freeze_depth == 0) {
        pmi_flag_lower(h, PMI_HEAP_FROZEN);
        thawed = true;
    }
    pthread_mutex_unlock(&h->lock);
    return thawed;
}

void pmi_heap_thaw(pmi_heap_t* h) {
    if (pmi_heap_unfreeze(h)) pmi_release_deferred(h);
}

/* -- walking (records in the C library's heap, so the walk never allocates from mimalloc) -------- */

static bool pmi_grow(void** array, size_t* capacity, size_t count, size_t item) {
    if (count < *capacity) return true;
    size_t wanted = (*capacity == 0 ? 256 : 2 * *capacity);
    void* bigger = realloc(*array, wanted * item);
    if (bigger == NULL) return false;
    *array = bigger;
    *capacity = wanted;
    return true;
}

typedef struct pmi_walk_state_s {
    pmi_walk_t* walk;
    size_t area_capacity, block_capacity, block_area_capacity;
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
    if (!pmi_grow((void**)&w->block_area, &st->block_area_capacity, w->block_count, sizeof(size_t))) goto oom;
    w->blocks[w->block_count] = (uintptr_t)block;
    w->block_area[w->block_count] = w->area_count - 1;
    w->block_count++;
    return true;
oom:
    w->failed = PMI_ENOMEM;
    return false;
}

/* mi_heap_visit_blocks in v3.4.3 visits the heap's arena pages and its abandoned OS pages, but not the
   OS pages (huge or over-aligned blocks, or every page under disallow_arena_alloc) that a thread's
   theap still owns (arena.c, _mi_heap_visit_blocks). Those are on the theaps' page queues: visit them
   here, so a walk reports every live block. The caller holds what pmi_heap_walk holds. */
static void pmi_visit_owned_os_pages(mi_heap_t* heap, bool visit_blocks, pmi_walk_state_t* st) {
    mi_lock(&heap->theaps_lock) {
        for (mi_theap_t* theap = heap->theaps; theap != NULL && st->walk->failed == 0; theap = theap->hnext) {
            for (size_t bin = 0; bin <= MI_BIN_FULL && st->walk->failed == 0; bin++) {
                for (mi_page_t* page = theap->pages[bin].first; page != NULL; page = page->next) {
                    if (page->memid.memkind == MI_MEM_ARENA) continue;  /* the bitmap walk saw it */
                    mi_heap_area_t area;
                    _mi_heap_area_init(&area, page);
                    if (!pmi_walk_visitor(heap, &area, NULL, area.block_size, st)) break;
                    if (visit_blocks && !_mi_page_visit_blocks(page, &pmi_walk_visitor, st)) break;
                }
            }
        }
    }
}

/* mimalloc's walk assumes nobody else touches the heap (mimalloc#369): the heap is frozen (no
   allocations or frees through pymimalloc), walks are serialised (two walks rewrite the same page free
   lists), no thread may abandon its pages meanwhile (thread exit), and for the main heap, which mimalloc
   itself allocates from when any heap creates a heap or meets a new arena, the world is stopped.
   The world lock is held from before the walk's freeze until its freeze is undone: pmi_fork_prepare takes it
   first, so a fork never copies the walk's freeze. Taken inside them (as before), a fork could land between the
   freeze and the lock, or between the unlock and the thaw, and its child kept the heap frozen for good, with no
   thread to thaw it (the two-thread finalizer fuzz found it). The frees deferred during the walk come after the
   unlock: once the flag is down another thread may close the heap, and the free of its last block then takes the
   world lock to release it (a review's stress test hung the walker on itself, holding the lock there). */
int pmi_heap_walk(pmi_heap_t* h, bool visit_blocks, pmi_walk_t* walk) {
    memset(walk, 0, sizeof(*walk));
    pthread_mutex_lock(&pmi_world_lock);
    /* the walk holds its own freeze (they nest), so no caller can leave it unfrozen half-way */
    const int status = pmi_heap_freeze(h);
    if (status != PMI_OK) {
        pthread_mutex_unlock(&pmi_world_lock);
        return status;
    }
    pmi_schedule_noise();
    if (h->is_main) pmi_world_stop();
    pthread_rwlock_wrlock(&pmi_exit_lock);
    pmi_walk_state_t st = { walk, 0, 0, 0 };
    if (mi_heap_visit_blocks(h->heap, visit_blocks, &pmi_walk_visitor, &st) && walk->failed == 0) {
        pmi_visit_owned_os_pages(h->heap, visit_blocks, &st);
    }
    pthread_rwlock_unlock(&pmi_exit_lock);
    if (h->is_main) pmi_world_resume();
    const bool thawed = pmi_heap_unfreeze(h);
    pthread_mutex_unlock(&pmi_world_lock);
    pmi_schedule_noise();
    if (thawed) pmi_release_deferred(h);  /* the caller's reference keeps `h` alive */
    return walk->failed;
}

void pmi_walk_free(pmi_walk_t* walk) {
    free(walk->areas);
    free(walk->blocks);
    free(walk->block_area);
    memset(walk, 0, sizeof(*walk));
}

/* for the other glue files (declared in pmi_internal.h) */
void* pmi_meta_realloc(void* p, size_t size) {  /* bracketed, as pmi_wrapper_new says why */
    pmi_world_enter();
    void* q = realloc(p, size);
    pmi_world_leave();
    return q;
}
void pmi_meta_free(void* p) {
    pmi_world_enter();
    free(p);
    pmi_world_leave();
}
int pmi_heap_enter(pmi_heap_t* h) { return pmi_enter_alloc(h); }
/* Reading a heap's statistics: a frozen heap may be read, a closed one not, and a close still deciding is waited out,
   as an allocation waits it out. A reader that entered just after the closer stopped waiting for calls in flight found
   the heap not closed yet, and read mimalloc's statistics of a heap that pmi_heap_try_release destroyed meanwhile: the
   checked build read garbage (tests/children/threads_stats_while_closing.py; a review found it by reading). */
int pmi_heap_enter_read(pmi_heap_t* h) {
    for (;;) {
        if (!pmi_enter_free(h)) {  /* frozen: its counters are still safe to read */
            const unsigned slot = pmi_slot();  /* a freeze already waited for brackets; this one only reads */
            pmi_bracket_in(slot, &h->stripes[slot].active);
        }
        const int flags = pmi_flags(h);
        if (flags & PMI_HEAP_CLOSED) break;
        if (!(flags & PMI_HEAP_CLOSING)) return PMI_OK;
        pmi_leave(h);  /* the close waits for this bracket too */
        sched_yield();
    }
    pmi_leave(h);
    return PMI_ECLOSED;
}
void pmi_heap_leave_read(pmi_heap_t* h) { pmi_leave(h); }
void pmi_heap_leave(pmi_heap_t* h) { pmi_leave(h); }
mi_heap_t* pmi_heap_raw(pmi_heap_t* h) { return h->heap; }

/* -- pins, lookups, process-wide calls -------------------------------------------------------------- */

static int pmi_heap_pin_if(pmi_heap_t* h, bool frozen_ok) {
    pthread_mutex_lock(&h->lock);  /* a close decides under this lock: it sees the pin, or we see it closed */
    const int status = (pmi_is_closed(h) ? PMI_ECLOSED
                        : (h->freeze_depth > 0 && !frozen_ok) ? PMI_EFROZEN : PMI_OK);
    if (status == PMI_OK) atomic_fetch_add(&h->pins, 1);
    pthread_mutex_unlock(&h->lock);
    return status;
}

int pmi_heap_pin(pmi_heap_t* h) { return pmi_heap_pin_if(h, false); }
int pmi_heap_pin_even_frozen(pmi_heap_t* h) { return pmi_heap_pin_if(h, true); }

void pmi_heap_unpin(pmi_heap_t* h) { atomic_fetch_sub(&h->pins, 1); }

uintptr_t pmi_heap_of(uintptr_t address) {
    pthread_rwlock_rdlock(&pmi_unmap_lock);
    mi_page_t* page = _mi_safe_ptr_page((const void*)address);
    const uintptr_t heap = (page == NULL ? 0 : (uintptr_t)mi_page_heap(page));
    pthread_rwlock_unlock(&pmi_unmap_lock);
    return heap;
}

size_t pmi_usable_size(uintptr_t address) {
    size_t usable = 0;
    pthread_rwlock_rdlock(&pmi_unmap_lock);
    mi_page_t* page = _mi_safe_ptr_page((const void*)address);
    if (page != NULL) {
        const size_t block_size = mi_page_block_size(page);
        const uint8_t* start = mi_page_start(page);
        const uint8_t* p = (const uint8_t*)address;
        if (block_size > 0 && p >= start && (size_t)(p - start) < page->reserved * block_size) {
            const size_t offset = (size_t)(p - start) % block_size;
            const size_t capacity = pmi_page_block_usable(page, p - offset);
            usable = (offset < capacity ? capacity - offset : 0);
        }
    }
    pthread_rwlock_unlock(&pmi_unmap_lock);
    return usable;
}

void pmi_python_heap_collect_here(bool force);  /* pmi_mimalloc.c */
void pmi_collect(bool force) {
    pmi_world_enter();
    pmi_python_heap_collect_here(force);  /* this thread's part of Python's heap (install()) */
    pmi_heap_collect_reused(mi_heap_main());
    mi_collect(force);  /* this thread's part of the default heap, then the arenas' purges */
    pmi_world_leave();
}

void pmi_stats_reset(void) {
    pmi_world_enter();
    pmi_stats_stop();
    mi_stats_reset();
    mi_stats_t* main_stats = &mi_heap_main()->stats;
    if (main_stats->size != sizeof(mi_stats_t)) mi_stats_header_init(main_stats);
    pmi_stats_resume();
    pmi_world_leave();
}

/* The arenas pymimalloc reserved. mimalloc dereferences an arena id as its arena, so a heap is placed only
   in an arena on this list (an id forged from Python is refused, not followed). Arenas are never given back. */
#define PMI_ARENAS_MAX 256
static void* pmi_arenas[PMI_ARENAS_MAX];
static atomic_int pmi_arena_count;
static pthread_mutex_t pmi_arenas_lock = PTHREAD_MUTEX_INITIALIZER;

/* The lock is taken inside the world bracket, never around it: a fork stops the world, so it waits for a thread that
   holds the lock to leave. Taken before the bracket, a thread waited in pmi_world_enter with the lock held while a
   fork went on, and the child found it held for good in its first Arena() (a review found it). */
int pmi_arena_reserve(size_t size, bool commit, bool allow_large, void** arena_id) {
    pmi_world_enter();
    pthread_mutex_lock(&pmi_arenas_lock);
    pmi_schedule_noise();  /* checked builds: a fork would meet the lock held here, were it taken outside the bracket */
    int err = ENOMEM;
    if (atomic_load(&pmi_arena_count) < PMI_ARENAS_MAX) {
        err = mi_reserve_os_memory_ex(size, commit, allow_large, true /* exclusive */, (mi_arena_id_t*)arena_id);
        if (err == 0) {
            pmi_arenas_bin_first_chunk();  /* its chunk 0 too (pmi_mimalloc.c) */
            pmi_arenas[atomic_load(&pmi_arena_count)] = *arena_id;
            atomic_fetch_add(&pmi_arena_count, 1);  /* the entry is written before it is counted */
        }
    }
    pthread_mutex_unlock(&pmi_arenas_lock);
    pmi_world_leave();
    return err;
}

int pmi_arena_known(void* arena_id) {
    const int count = atomic_load(&pmi_arena_count);
    for (int i = 0; i < count; i++) {
        if (pmi_arenas[i] == arena_id) return 1;
    }
    return 0;
}

size_t pmi_arena_max_size(void) { return MI_ARENA_MAX_SIZE; }
size_t pmi_arena_granularity(void) { return MI_ARENA_SLICE_SIZE * MI_BCHUNK_BITS; }
