/* pymimalloc's heap and block glue: the lifetimes and locking that Python cannot do safely by itself.
 *
 * Ownership model
 *   - A pmi_heap_t wraps one mimalloc heap. It stays alive while anything can still reach it: its
 *     counted references (the Python Heap's handle and every numpy handler), every live block or array
 *     data (its live count), every call in flight (its brackets) and every thread that is about to finish
 *     off a closed heap (its `pending` count). The last of these frees it, deciding under the heap's lock
 *     (pmi_heap_drop), so a block can always reach its heap's counters, even after the heap was closed.
 *   - A pmi_block_t owns one mimalloc block. Its storage belongs to the caller (a Python Block embeds it);
 *     the glue only fills it in. pmi_block_release frees the block (mi_free); Python calls it exactly
 *     once, when the Block is freed or deallocated, so memory is freed only when no Python object can
 *     reach it any more.
 *   - The live counts, the peak and the brackets are striped by thread, and a stripe has one writer: a
 *     thread takes one of PMI_OWNED slots for its life (the same slot in every heap: stripe i of each heap
 *     is slot i's cache line) and writes its stripes with no locked instruction (on x86-64 one unlocked add
 *     to memory per counter: pmi_own_add).
 *     Threads beyond PMI_OWNED share one last stripe and write it with locked read-modify-writes, as every
 *     thread once did. A slot goes back when its thread exits (a pthread key's destructor) and the next
 *     thread to take it carries on from the counts it holds: nothing needs folding, since a heap's counts
 *     are only ever the sum of its stripes, and the hand-over (a release and an acquire on the slot
 *     bitmap) orders the old owner's last stores before the new owner's first. A fork leaves the child
 *     only the forking thread's slot. A stripe counts the blocks it allocated and the blocks it freed (live
 *     blocks are the difference of the sums), and its live bytes may go negative (a block freed by another
 *     thread than the one that allocated it); readers add them up (see pmi_heap_live_blocks for what that means while
 *     others allocate).
 *   - Closing waits for allocations in flight (any thread) to finish and then refuses new ones. If
 *     nothing allocated from the heap is alive, the mimalloc heap is destroyed at once (all its memory
 *     released). Otherwise it is destroyed by whichever thread frees the last live block. pymimalloc never
 *     calls mi_heap_delete: in v3.4.3 it mishandles pages that live outside an arena (docs/reliability.md).
 *
 * Who may touch mimalloc when
 *   - Every call that uses a heap is bracketed by that heap's `active` count. Closing, freezing, a walk of
 *     the main heap and fork wait for the brackets they care about to drain: a Dekker handshake in which
 *     either the waiter sees the bracket, or the caller sees the flag. The two sides are asymmetric:
 *       caller (light, every allocation and free):  active += 1 (an unlocked add to its own stripe);
 *                                                     light fence; load the flags; if one is up:
 *                                                     active -= 1 and back off.
 *       leaving:                                     active -= 1 with a release store (what the call did
 *                                                     to the heap is visible to whoever reads the 0).
 *       waiter (heavy, close/freeze/walk/fork):      store the flag; heavy fence; add up `active` of
 *                                                     every stripe (acquire loads) until it reads 0.
 *     The light fence is only a compiler barrier and the heavy fence is membarrier(2)'s
 *     MEMBARRIER_CMD_PRIVATE_EXPEDITED, registered at pmi_init (the pattern of liburcu's "memb" flavour and
 *     folly's asymmetricHeavyBarrier): the kernel makes every running thread of the process execute a full
 *     barrier, and a thread that is not running passed one when it was switched out, so after the heavy
 *     fence each caller's store is visible to the waiter, or that caller's flag load comes after the fence
 *     and sees the flag. Where the kernel refuses membarrier (no such call, a seccomp filter), pmi_init
 *     chooses the fallback: no thread owns a stripe, so every call writes the shared stripe with locked
 *     read-modify-writes (each a full barrier), and the heavy side is a seq_cst fence. The owned stripes'
 *     fast paths thus never ask which protocol runs. The choice is made once, before any thread takes a
 *     slot, and made again in a forked child, which is alone (registration belongs to a process: the
 *     child asks the kernel again, and gives up its slot if refused). tests/children/without_membarrier.py
 *     runs suites under a seccomp filter that refuses it. If a registered membarrier ever fails, the heavy fence falls back to an mprotect
 *     that makes the kernel interrupt every CPU running the process (folly's fallback), never to nothing.
 *     Built with PMI_ASYMMETRIC_FENCE=0 (benchmarks/tsan.py does: ThreadSanitizer cannot model membarrier),
 *     both sides are seq_cst fences. pmi_fence_mode() says which protocol runs.
 *   - A heap's refusals are bits of one word (`flags`: closed, closing, frozen, and the stopped world,
 *     which pmi_world_stop raises in every heap), so a call tests them all with one load.
 *   - The same handshake orders a free against a close: the free raises its stripe's count of frees
 *     (release), light fence, then loads the closed flag; the close raises it, heavy fence, then adds the
 *     counts up. Either the close sees the free, or the free sees the heap closed and finishes it itself. Frees
 *     that see it closed take the slow path (pmi_heap_finish), which issues a seq_cst fence before adding
 *     up, so two last frees in two threads cannot both miss each other.
 *     A free of a Python object (pmi_object_free, the hook's hottest glue call) instead reads the closed
 *     flag once, with the others, at the start of its bracket, and needs no second fence: if no close was
 *     deciding then (no `closing` flag), a close that starts later raises `closing` and waits for this
 *     bracket before it decides and adds up, so the flag cannot change while the free is inside. A free
 *     that sees `closing` takes the general path above.
 *   - Counters and brackets are never written from a signal handler (a plain read-modify-write
 *     interrupted by another on the same word would lose one); mimalloc is not async-signal-safe either.
 *   - One process-wide "world" mutex serialises what changes mimalloc's set of heaps or walks one: heap
 *     creation and destruction, walks, and fork. Thread exits (mimalloc's thread-done, which abandons a
 *     thread's pages) take an exit lock that walks hold exclusively.
 *   - Address lookups (heap_of, contains, usable_size of any int) read page metadata that another
 *     thread's free may unmap; they hold a read lock that mimalloc's own munmap and mprotect take for
 *     writing (pmi_mimalloc.c routes them through pmi_os_unmap_begin/end).
 *
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines.
 */

/* status codes returned by pmi_heap_close and friends; _core.py turns them into exceptions */
#define PMI_OK          0
#define PMI_DESTROYED   1    /* closed: all memory released at once (mi_heap_destroy) */
#define PMI_DEFERRED    2    /* closed with live blocks: the memory goes when the last of them is freed */
#define PMI_ECLOSED    -1    /* the heap is closed */
#define PMI_EBUSY      -2    /* blocks or arrays of the heap are still alive (strict destroy) */
#define PMI_EMAIN      -3    /* the main heap cannot be closed */
#define PMI_ENOMEM     -4    /* out of memory */
#define PMI_EFROZEN    -5    /* a visit or snapshot is in progress: the heap refuses allocations and frees */
#define PMI_EPINNED    -6    /* the heap is pinned: as_default(), numpy_allocator() or python_objects() */
#define PMI_EDEBUGHOOKS -8   /* CPython's debug hooks serve this allocator domain (PYTHONMALLOC=debug, -X dev) */
#define PMI_ETARGETS   -9    /* too many heaps hold Python objects at once (pmi_allocator.c, PMI_TARGETS) */
#define PMI_ENOTHOOKED -10   /* python_objects() needs the MEM and OBJ domains hooked first (an internal misuse) */

/* tracemalloc domain of every Block allocated through pymimalloc (numpy traces array data itself) */
#define PMI_TRACEMALLOC_DOMAIN 7368041

/* close modes */
#define PMI_CLOSE_AUTO     0  /* destroy if nothing is live, else close and destroy at the last free */
#define PMI_CLOSE_DESTROY  1  /* destroy, or PMI_EBUSY while anything is live */

/* heap states, as pmi_heap_state reports them */
#define PMI_STATE_OPEN     0
#define PMI_STATE_CLOSED   2
#define PMI_STATE_FROZEN   3  /* open, and held still by a visit or snapshot */

typedef struct pmi_heap_s pmi_heap_t;

typedef struct pmi_block_s {
    void*       data;    /* start of the mimalloc block; NULL once realloc moved it to a new record */
    size_t      size;    /* bytes requested */
    pmi_heap_t* owner;   /* counted reference */
    struct pmi_block_s* next_deferred;  /* link in the owner's list of frees put off by a freeze */
} pmi_block_t;

int         pmi_init(void);                      /* once, at import; PMI_ENOMEM on failure */
/* Options pymimalloc refuses (pmi_heap.c has the table): pmi_init puts each back to its safe value. The
   report is one line per option it put back, handed out once (then empty); the storage is static. */
const char* pmi_refused_report(void);
size_t      pmi_refused_count(void);
const char* pmi_refused_name(size_t index);
long        pmi_refused_safe(size_t index);
const char* pmi_refused_why(size_t index);
/* Why pymimalloc refuses `value` for `option` (the table above, and max_vabits changed at run time), or NULL if
   it does not: the one check behind pymimalloc.options and OptionsScope. The text is static. */
const char* pmi_option_refusal(int option, long value);  /* option: an mi_option_t */
long        pmi_error_count(void);               /* errors mimalloc reported since import (mi_register_error) */
int         pmi_error_last(void);                /* the errno of the last one (ENOMEM, EOVERFLOW, EFAULT, ...) */
pmi_heap_t* pmi_heap_new(void);                  /* NULL when out of memory */
pmi_heap_t* pmi_heap_new_in_arena(void* arena_id);  /* allocates only inside that arena; NULL on failure */
pmi_heap_t* pmi_heap_main_handle(void);          /* a new reference to the wrapper of mimalloc's main heap */
void        pmi_heap_release(pmi_heap_t* heap);  /* drop the Python handle's reference; closes the heap if open */
int         pmi_heap_close(pmi_heap_t* heap, int mode);
int         pmi_heap_state(pmi_heap_t* heap);
int         pmi_heap_is_main(pmi_heap_t* heap);
int         pmi_heap_released(pmi_heap_t* heap);  /* 1 once the mimalloc heap is destroyed */
uintptr_t   pmi_heap_id(pmi_heap_t* heap);       /* the mi_heap_t address, as mi_heap_of reports it */
/* The sums of the heap's striped counters. Exact while no other thread allocates from or frees into the
   heap; meanwhile a sum may miss what those threads do during the read (never more than that). */
size_t      pmi_heap_live_blocks(pmi_heap_t* heap);
size_t      pmi_heap_live_bytes(pmi_heap_t* heap);
/* The highest live_bytes each thread's stripe reached, added up: exact while pmi_heap_peak_exact says so. */
size_t      pmi_heap_peak_bytes(pmi_heap_t* heap);
/* 1 while pmi_heap_peak_bytes is exact: at most one thread's stripe ever counted a block in, out or resized (the
   same thread, or threads that had the same slot one after another). 0 once a second stripe did: then the sum of
   peaks may be far above the true peak (a block allocated in one thread and freed in another only ever
   raises the first stripe's count), so it says nothing exact. */
int         pmi_heap_peak_exact(pmi_heap_t* heap);
size_t      pmi_heap_total_blocks(pmi_heap_t* heap);  /* allocations ever made (blocks, arrays, objects) */
size_t      pmi_heap_huge_bytes(pmi_heap_t* heap);    /* live bytes of those counted above 512 KiB */
/* Which bracket protocol runs (see the ownership model): PMI_FENCE_MEMBARRIER, PMI_FENCE_SEQ_CST (the kernel
   refused membarrier) or PMI_FENCE_BUILD (built with PMI_ASYMMETRIC_FENCE=0: seq_cst fences, for TSan) */
#define PMI_FENCE_BUILD      0
#define PMI_FENCE_SEQ_CST    1
#define PMI_FENCE_MEMBARRIER 2
int         pmi_fence_mode(void);
int         pmi_heap_collect(pmi_heap_t* heap, bool force);
int         pmi_heap_contains(pmi_heap_t* heap, uintptr_t address);  /* 1, 0, or PMI_ECLOSED */

/* Allocate `size` bytes (zeroed if `zero`), aligned to `alignment` (a power of two; 0 = natural), into
   the caller's record `into`. Returns `into`, or NULL if the heap is closed or frozen, or out of memory:
   pmi_allocation_failure says which (`into` is then untouched). */
pmi_block_t* pmi_block_alloc(pmi_heap_t* heap, pmi_block_t* into, size_t size, size_t alignment, bool zero);
/* Move `from`'s memory into the caller's record `into`, grown or shrunk to `size` bytes, keeping its
   contents. Returns `into`; `from->data` becomes NULL (its release then frees nothing). On failure (NULL)
   both are unchanged. */
pmi_block_t* pmi_block_realloc(pmi_block_t* from, pmi_block_t* into, size_t size);
/* Free the record's memory (if any) and set its data to NULL; the record's storage stays the caller's. */
void         pmi_block_release(pmi_block_t* block);
/* Why the calling thread's last pmi_block_alloc/realloc returned NULL: PMI_ECLOSED, PMI_EFROZEN or
   PMI_ENOMEM. */
int          pmi_allocation_failure(void);

/* Pin the heap open while as_default(), numpy_allocator() or python_objects() uses it: closing fails with PMI_EPINNED. */
int  pmi_heap_pin(pmi_heap_t* heap);
/* The same, but a frozen heap may be pinned too (python_objects(): a frozen heap's new objects go elsewhere) */
int  pmi_heap_pin_even_frozen(pmi_heap_t* heap);
void pmi_heap_unpin(pmi_heap_t* heap);

/* Freezing: while frozen (any number of nested freezes), allocations fail with PMI_EFROZEN in every
   thread and blocks released meanwhile are freed at the last thaw, so every address a walk reported
   stays valid. Freeze waits for allocations and frees in flight. Returns PMI_OK or PMI_ECLOSED. */
int  pmi_heap_freeze(pmi_heap_t* heap);
void pmi_heap_thaw(pmi_heap_t* heap);

/* A walk of a frozen heap (mi_heap_visit_blocks), recorded without calling back into Python. Walks
   are serialised process-wide; the record's arrays come from the C library's malloc, not mimalloc. */
typedef struct pmi_area_s {
    uintptr_t address;          /* start of the area's blocks */
    size_t    reserved;         /* bytes reserved (virtual) */
    size_t    committed;        /* bytes committed */
    size_t    used;             /* number of blocks in use */
    size_t    block_size;       /* bytes per block */
    size_t    full_block_size;  /* bytes per block including padding and metadata */
} pmi_area_t;

typedef struct pmi_walk_s {
    pmi_area_t* areas;
    size_t      area_count;
    uintptr_t*  blocks;         /* block addresses, grouped by area */
    size_t*     block_area;     /* for each block, the index of its area */
    size_t      block_count;
    int         failed;         /* PMI_ENOMEM if recording ran out of memory */
} pmi_walk_t;

/* The walk freezes the heap itself for its duration (nested in any freeze the caller holds): PMI_OK, PMI_ECLOSED
   or PMI_ENOMEM. */
int  pmi_heap_walk(pmi_heap_t* heap, bool visit_blocks, pmi_walk_t* walk);
void pmi_walk_free(pmi_walk_t* walk);

uintptr_t pmi_heap_of(uintptr_t address);        /* mi_heap_t address owning `address`, or 0 */
/* Bytes from `address` to the end of the usable part of the mimalloc block holding it (0 if it is in no
   mimalloc page): mi_usable_size for a block's start, less the offset for an address inside a block, and
   never an assertion for a freed block (see pmi_page_block_usable in pmi_mimalloc.c). */
size_t    pmi_usable_size(uintptr_t address);

/* Process-wide calls, bracketed so that fork and walks of the main heap wait for them. */
void      pmi_collect(bool force);
/* mi_stats_reset, then the main heap's statistics header again: the reset merges the main heap's statistics
   into the process's and zeroes them, header included, after which mi_heap_stats_get_json refuses them */
void      pmi_stats_reset(void);
int       pmi_arena_reserve(size_t size, bool commit, bool allow_large, void** arena_id);
int       pmi_arena_known(void* arena_id);        /* 1 if pmi_arena_reserve made this id (heaps go only there) */
size_t    pmi_arena_max_size(void);              /* the largest arena mimalloc v3 manages as one (bytes) */
size_t    pmi_arena_granularity(void);           /* arena sizes are whole multiples of this (bytes) */
