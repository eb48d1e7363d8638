/* pymimalloc's heap and block glue: the lifetimes and locking that Python cannot do safely by itself.
 *
 * Ownership model
 *   - A pmi_heap_t wraps one mimalloc heap. It is reference counted: one reference for the Python Heap
 *     object's handle, one for every live pmi_block_t. It is freed when the last reference goes, so a
 *     block can always reach its heap's counters, even after the heap was closed.
 *   - A pmi_block_t owns one mimalloc block. pmi_block_release frees the block (mi_free) and drops the
 *     heap reference. Python calls it exactly once, from the cdata's destructor (ffi.gc), so memory is
 *     freed only when no Python object can reach it any more.
 *   - Closing waits for allocations in flight (any thread) to finish, then either destroys the heap
 *     (no live blocks: all its memory is released at once) or deletes it (live blocks are handed to the
 *     main heap and stay valid until their owners free them).
 *
 * No include guards: cffi's cdef parser reads this file as it is.
 */

/* status codes returned by pmi_heap_close and friends; _core.py turns them into exceptions */
#define PMI_OK          0
#define PMI_DESTROYED   1    /* closed: all memory released at once (mi_heap_destroy) */
#define PMI_DELETED     2    /* closed: live blocks handed to the main heap (mi_heap_delete) */
#define PMI_ECLOSED    -1    /* the heap is closed */
#define PMI_EBUSY      -2    /* blocks are still live (strict destroy), or another thread is closing */
#define PMI_EMAIN      -3    /* the main heap cannot be closed */
#define PMI_ENOMEM     -4    /* out of memory */
#define PMI_EFROZEN    -5    /* a visit or snapshot is in progress: the heap refuses allocations and frees */
#define PMI_EPINNED    -6    /* the heap is a thread's default heap (as_default) or numpy's allocator */

/* tracemalloc domain of every allocation made through pymimalloc (numpy's own is 389047) */
#define PMI_TRACEMALLOC_DOMAIN 7368041

/* close modes */
#define PMI_CLOSE_AUTO     0  /* destroy if nothing is live, else delete */
#define PMI_CLOSE_DESTROY  1  /* destroy, or PMI_EBUSY while anything is live */
#define PMI_CLOSE_DELETE   2  /* delete */

/* heap states */
#define PMI_STATE_OPEN     0
#define PMI_STATE_CLOSING  1
#define PMI_STATE_CLOSED   2
#define PMI_STATE_FROZEN   3  /* a visit or snapshot holds the heap still */

typedef struct pmi_heap_s pmi_heap_t;

typedef struct pmi_block_s {
    void*       data;    /* start of the mimalloc block; NULL once realloc moved it to a new record */
    size_t      size;    /* bytes requested */
    pmi_heap_t* owner;   /* counted reference */
    struct pmi_block_s* next_deferred;  /* link in the owner's list of frees put off by a freeze */
} pmi_block_t;

int         pmi_init(void);                      /* once, at import; PMI_ENOMEM on failure */
long        pmi_error_count(void);               /* errors mimalloc reported since import (mi_register_error) */
int         pmi_error_last(void);                /* the errno of the last one (ENOMEM, EOVERFLOW, EFAULT, ...) */
pmi_heap_t* pmi_heap_new(void);                  /* NULL when out of memory */
pmi_heap_t* pmi_heap_new_in_arena(void* arena_id);  /* allocates only inside that arena; NULL on failure */
pmi_heap_t* pmi_heap_main_handle(void);          /* a new reference to the wrapper of mimalloc's main heap */
void        pmi_heap_release(pmi_heap_t* heap);  /* drop the Python handle's reference; closes the heap if open */
int         pmi_heap_close(pmi_heap_t* heap, int mode);
int         pmi_heap_state(pmi_heap_t* heap);
int         pmi_heap_is_main(pmi_heap_t* heap);
uintptr_t   pmi_heap_id(pmi_heap_t* heap);       /* the mi_heap_t address, as mi_heap_of reports it */
size_t      pmi_heap_live_blocks(pmi_heap_t* heap);
size_t      pmi_heap_live_bytes(pmi_heap_t* heap);
int         pmi_heap_collect(pmi_heap_t* heap, bool force);
int         pmi_heap_contains(pmi_heap_t* heap, uintptr_t address);  /* 1, 0, or PMI_ECLOSED */

/* Allocate `size` bytes (zeroed if `zero`), aligned to `alignment` (a power of two; 0 = natural).
   NULL if the heap is closed (see pmi_heap_state) or out of memory. */
pmi_block_t* pmi_block_alloc(pmi_heap_t* heap, size_t size, size_t alignment, bool zero);
/* Move `block` into a new record of `size` bytes, keeping its contents. On success `block->data`
   becomes NULL (its release then frees nothing); on failure (NULL) `block` is unchanged. */
pmi_block_t* pmi_block_realloc(pmi_block_t* block, size_t size);
void         pmi_block_release(pmi_block_t* block);
/* Why the calling thread's last pmi_block_alloc/realloc returned NULL: PMI_ECLOSED, PMI_EFROZEN,
   PMI_EBUSY (closing at that moment) or PMI_ENOMEM. */
int          pmi_allocation_failure(void);

/* Make `heap` the calling thread's default (mi_theap_set_default); `*previous` receives the old default
   for pmi_heap_pop_default. While any thread uses it as default, closing it fails with PMI_EDEFAULT. */
int  pmi_heap_push_default(pmi_heap_t* heap, void** previous);
void pmi_heap_pop_default(pmi_heap_t* heap, void* previous);

/* Pin the heap open while numpy_allocator() uses it: closing fails with PMI_EPINNED meanwhile. */
int  pmi_heap_pin(pmi_heap_t* heap);
void pmi_heap_unpin(pmi_heap_t* heap);

/* Freezing: while frozen (any number of nested freezes), allocations fail with PMI_EFROZEN in every
   thread and blocks released meanwhile are freed at the last thaw, so every address a walk reported
   stays valid. Freeze waits for allocations and frees in flight. Returns PMI_OK or an error. */
int  pmi_heap_freeze(pmi_heap_t* heap);
void pmi_heap_thaw(pmi_heap_t* heap);

/* A walk of a frozen heap (mi_heap_visit_blocks), recorded without calling back into Python. */
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

int  pmi_heap_walk(pmi_heap_t* heap, bool visit_blocks, pmi_walk_t* walk);  /* heap must be frozen */
void pmi_walk_free(pmi_walk_t* walk);

uintptr_t pmi_heap_of(uintptr_t address);        /* mi_heap_t address owning `address`, or 0 */
size_t    pmi_usable_size(uintptr_t address);    /* 0 if `address` is not in a mimalloc page */
