/* Shared between pymimalloc's C files only; not part of the cdef. Include after pmi_heap.h, which has no
   include guards (it is part of cffi's cdef). */
#ifndef PMI_INTERNAL_H
#define PMI_INTERNAL_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mimalloc.h>

/* Everything pymimalloc keeps per thread, in one thread-local (defined in pmi_heap.c). A module loaded with
   dlopen finds each thread-local through a call (a TLS descriptor, -mtls-dialect=gnu2): with one variable, a hot
   path makes one such call for all of ours (measured: 4 instructions per call saved, on every allocation and
   free of an objects heap). */
#define PMI_NO_SLOT 0xffffffffu  /* pmi_thread.stripe before the thread's first glue call: above every stripe, so
                                    one compare tells a hot path both "no slot yet" and "not a slot of its own" */
typedef struct pmi_thread_s {
    unsigned    stripe;          /* where this thread's stripe is in a heap's stripes, in bytes: its slot times the
                                    stripe's size (one cache line), which an address adds as it is; PMI_NO_SLOT */
    int         world_depth;     /* world brackets this thread holds */
    int         last_failure;    /* why this thread's last Block allocation failed */
    /* pmi_allocator.c: what its python_objects() lookup last found in this thread, and what that depended on */
    void*       objects_tstate;
    void*       objects_context;
    uint64_t    objects_version;
    uint64_t    objects_epoch;
    pmi_heap_t* objects_target;
    /* pmi_allocator.c: the heap whose object this thread last freed, while no heap left its table since */
    const void* owner_raw;
    pmi_heap_t* owner_wrapper;
    uint64_t    owner_generation;
#if PMI_SCHEDULE_NOISE
    uint32_t    noise;           /* pmi_schedule_noise's generator */
#endif
} pmi_thread_t;
extern __thread pmi_thread_t pmi_thread;

/* Schedule noise, in checked builds only (build_ffi.py defines PMI_SCHEDULE_NOISE=1 with MI_DEBUG): at the steps
   where the glue moves a heap from one state to the next outside a single lock, the calling thread now and then
   gives up the CPU, so that the tests' threads meet in the windows between those steps far more often than
   timing alone makes them (pmi_heap.c has the generator and the list of steps). Release builds compile it away. */
#if PMI_SCHEDULE_NOISE
void pmi_schedule_noise(void);
#else
#define pmi_schedule_noise() ((void)0)
#endif
/* &pmi_thread, found once: the compiler otherwise treats the address as a constant and finds it again (another
   descriptor call) wherever it is used, rather than keep it in a register (the empty asm hides where it came from) */
static inline pmi_thread_t* pmi_thread_self(void) {
    pmi_thread_t* me = &pmi_thread;
    __asm__("" : "+r"(me));
    return me;
}

int        pmi_heap_enter(pmi_heap_t* heap);        /* bracket an allocating use of the heap: PMI_OK or why not */
void       pmi_heap_leave(pmi_heap_t* heap);
int        pmi_heap_enter_read(pmi_heap_t* heap);   /* bracket reading the heap (statistics): PMI_OK or PMI_ECLOSED */
void       pmi_heap_leave_read(pmi_heap_t* heap);
void       pmi_heap_collect_reused(mi_heap_t* heap);  /* this thread's reused huge page of `heap`, if free (pmi_mimalloc.c) */
/* statistics: the exit lock for writing around every read (pmi_stats_of in pmi_mimalloc.c) and reset
   (pmi_stats_reset) of mimalloc's counters, and the counters of every thread (pmi_mimalloc.c) */
void       pmi_stats_stop(void);
void       pmi_stats_resume(void);
char*      pmi_stats_json_all(mi_heap_t* heap, size_t size, char* buf);
void       pmi_stats_print_out_all(mi_output_fun* out, void* arg);
void       pmi_world_enter(void);                   /* bracket a process-wide mimalloc call (see pmi_heap.h) */
void       pmi_world_leave(void);
mi_heap_t* pmi_heap_raw(pmi_heap_t* heap);
/* our bookkeeping's memory (report text): the C library's, inside a world bracket so that a fork waits for it */
void*      pmi_meta_realloc(void* p, size_t size);
void       pmi_meta_free(void* p);
mi_heap_t* pmi_heap_new_unwrapped(void);            /* a mimalloc heap pymimalloc never closes (Python's own) */
void       pmi_heap_python_policy(mi_heap_t* heap);  /* its threads retain no full pages (pmi_mimalloc.c) */
void       pmi_heap_free_os_pages(mi_heap_t* heap);  /* before mi_heap_destroy: the OS pages it misses (pmi_mimalloc.c) */
/* Called with a mimalloc heap just before pymimalloc destroys it (nothing in it is alive any more). Set once
   by pmi_allocator.c, which keeps a table of heaps holding Python objects; NULL without it (the C harnesses). */
typedef void (*pmi_heap_destroying_fn)(mi_heap_t* heap);
extern _Atomic(pmi_heap_destroying_fn) pmi_heap_destroying;
void       pmi_heap_ref(pmi_heap_t* heap);           /* one more counted reference (numpy's handler) */
void       pmi_heap_unref_public(pmi_heap_t* heap);

/* One page-map lookup for the allocator hook (pmi_mimalloc.c, inlined by link-time optimisation): the page of
   `p` (NULL if mimalloc does not own it, or p is NULL), its heap, and mimalloc's free through that page (not
   NULL). */
struct mi_page_s;
struct mi_page_s* pmi_page_of(const void* p);
bool       pmi_page_map_committed(void);  /* the page map's top level is committed whole: ... */
struct mi_page_s* pmi_page_of_committed(const void* p);  /* ... then this lookup, without the commit test, does */
mi_heap_t* pmi_page_owner(const struct mi_page_s* page);
bool       pmi_page_in(const struct mi_page_s* page, const mi_heap_t* heap);  /* heap: not the main heap */
void       pmi_page_free(struct mi_page_s* page, void* p);
size_t     pmi_page_usable(const struct mi_page_s* page, const void* p);  /* mi_usable_size, page known */
/* mi_heap_realloc of `p` on `page` of `heap` to `size` bytes, asking `want` (>= size) if it must move */
void*      pmi_page_realloc(mi_heap_t* heap, struct mi_page_s* page, void* p, size_t size, size_t want);
bool       pmi_page_free_local(struct mi_page_s* page, void* p);  /* its calling-free common case, or false */
void*      pmi_fast_malloc(mi_heap_t* heap, size_t size);  /* mi_heap_malloc, inlined likewise */
void*      pmi_fast_malloc_small(mi_heap_t* heap, size_t size);  /* its fast path alone, or NULL */
void*      pmi_fast_zalloc_small(mi_heap_t* heap, size_t size);  /* the same, zeroed */
void*      pmi_heap_malloc_slow(mi_heap_t* heap, size_t size);  /* all of it but that fast path */
void*      pmi_heap_zalloc_slow(mi_heap_t* heap, size_t size);  /* mi_heap_zalloc likewise */
/* mi_heap_malloc, and the block's size as the glue counts it (pmi_page_block_usable) in *counted; inlined likewise */
void*      pmi_fast_malloc_counted(mi_heap_t* heap, size_t size, size_t* counted);
void*      pmi_fast_malloc_small_counted(mi_heap_t* heap, size_t size, size_t* counted);  /* its fast path alone, or NULL */
size_t     pmi_page_block_usable(const struct mi_page_s* page, const void* block);
void       pmi_free_purge_now(void* p);  /* mi_free, and a page of p's own back to the OS now (pmi_mimalloc.c) */
/* Before a thread's first allocation from `heap` outside any bracket (pmi_mimalloc.c says why) */
void       pmi_theap_ensure(mi_heap_t* heap);
bool       pmi_world_held(void);                    /* this thread holds a world bracket now */

/* at import: no transparent huge pages and a 64 MiB first arena, where the environment (MIMALLOC_ALLOW_THP,
   MIMALLOC_ARENA_RESERVE) gave no value */
void       pmi_option_defaults(void);
void       pmi_arena_first(void);  /* at import: mimalloc's first arena, reserved as mimalloc would */
void       pmi_arenas_bin_first_chunk(void);  /* at import and per Arena: freed memory in chunk 0 found first */
bool       pmi_starved(void);  /* mimalloc may not ask the OS for memory and has none reserved */

/* Array data for numpy's handler: counted in the heap by usable size; deferred while frozen. */
void*      pmi_data_alloc(pmi_heap_t* heap, size_t size, bool zero);
void*      pmi_data_realloc(pmi_heap_t* heap, void* p, size_t size);
void       pmi_data_free(pmi_heap_t* heap, void* p);
/* The same for Python objects (pmi_allocator.c): mimalloc's fast path inlined (and pmi_object_malloc itself, by
   link-time optimisation), and a free whose page the caller looked up: no more lookups */
void*      pmi_object_malloc(pmi_heap_t* heap, pmi_thread_t* me, size_t size);  /* me: &pmi_thread */
void*      pmi_object_malloc_fast(pmi_heap_t* heap, pmi_thread_t* me, size_t size);  /* its common case, or NULL */
void       pmi_object_free(pmi_heap_t* heap, pmi_thread_t* me, struct mi_page_s* page, void* p);

#ifdef Py_PYTHON_H
/* The one mechanism that adds C functions and types to the compiled module (pmi_python.c explains it), for the
   installers, with the GIL taken: the caller's pymimalloc._mimalloc (`caller`: its id()) as a new reference, NULL
   with no error in a sub-interpreter; adding functions to it; and an installer's status: 0 if `module` was found
   and `added` is 0, PMI_PYTHON_EINTERPRETER in a sub-interpreter, else -1 with the Python error printed. */
PyObject* pmi_module_get(uintptr_t caller);
int pmi_module_add_functions(PyObject* module, PyMethodDef* defs);
int pmi_module_status(PyObject* module, int added);
/* A new array with its data in the heap of numpy handler `capsule` (pmi_numpy.c); NotImplemented when
   numpy must make it itself. Usable once pmi_numpy_ready (numpy's C API imported). dtype and order may
   be NULL (float64, C order). */
extern bool pmi_numpy_ready;
PyObject* pmi_numpy_new(PyObject* capsule, PyObject* shape, PyObject* dtype, PyObject* order, bool zero);
PyObject* pmi_numpy_handler_new(pmi_heap_t* heap);   /* a new handler capsule holding a reference to `heap` */
PyObject* pmi_numpy_set_handler(PyObject* capsule);  /* PyDataMem_SetHandler: the previous handler */
PyObject* pmi_numpy_get_handler(void);               /* PyDataMem_GetHandler: the current one */
bool      pmi_numpy_is_ours(PyObject* capsule);      /* a handler capsule of a pymimalloc heap */

/* A with-block that holds a heap (pmi_python.c, the type HeapScope): as a context's default heap
   (as_default), as the heap of a context's Python objects (python_objects), as numpy's allocator
   (numpy_allocator), or frozen (snapshot, visit). Entering acquires in one C call and leaving releases in
   one, exactly once, whoever calls it; a scope dropped while held releases in its dealloc. The hook of
   pmi_allocator.c reads `handle` and `stage` of the python_objects scopes in the current context. */
enum { PMI_SCOPE_DEFAULT, PMI_SCOPE_OBJECTS, PMI_SCOPE_NUMPY, PMI_SCOPE_FREEZE };
enum { PMI_STAGE_NEW, PMI_STAGE_HELD, PMI_STAGE_DONE, PMI_STAGE_ENTERING /* __enter__ in progress */ };
typedef struct pmi_ScopeEntry pmi_ScopeEntry;
typedef struct {
    PyObject_HEAD
    PyObject*   heap;     /* the Heap (a strong reference) */
    pmi_heap_t* handle;   /* a counted reference, for the scope's whole life */
    int         kind;     /* PMI_SCOPE_* */
    int         stage;    /* PMI_STAGE_*; written with the GIL held */
    pmi_ScopeEntry* entry;  /* what a context's tuple holds for this scope (a strong reference) */
    PyObject*   final;    /* python_objects scopes, once left: the heap's counters at that moment (a tuple) */
} pmi_ScopeObject;
/* The garbage collector stays paused through the C part of entering and leaving a block (pmi_python.c) and
   around _numpy_call_with's sets of numpy's handler (pmi_numpy.c), so no finalizer runs inside them. CPython's
   contextvars are not safe against one (gh-148891): a collection inside ContextVar.set's allocation may run a
   finalizer that sets a ContextVar too, which frees the context's mapping the outer set is still walking and
   leaves a cached value dangling (tests/children/scopes_gc_fuzz.py crashed so, in our ContextVars and numpy's).
   And a block's own state cannot change under it: a finalizer that enters, leaves or drops a block (four defects
   reviews found). Collections put off meanwhile run at the next allocation after. The Python hooks (_entered,
   _left) run with the collector as the caller had it. */
static inline int pmi_gc_pause(void) { return PyGC_Disable(); }
static inline void pmi_gc_resume(int was_enabled) { if (was_enabled) PyGC_Enable(); }

/* A context's tuples hold entries, not scopes, so that a context never keeps a block alive: a scope dropped
   without __exit__ (a with-statement unwound before it could call it) is deallocated, lets its heap go, and
   clears its entry, which readers then skip. */
struct pmi_ScopeEntry {
    PyObject_HEAD
    pmi_ScopeObject* scope;  /* borrowed; NULL once the scope is gone */
};
extern PyTypeObject pmi_EntryType;
/* The scope of `item`, an item of a tuple read from one of these ContextVars, if it is the entry of a block of `kind`
   that still holds its heap; NULL for anything else. Python code can reach the ContextVars (iterating
   contextvars.copy_context() lists them) and set them to anything, or move one's entries into another: such a value
   is passed over, never followed (a review crashed the process with a forged tuple, and a python_objects() entry in
   the numpy list reached a NULL handler). */
static inline pmi_ScopeObject* pmi_entry_held(PyObject* item, int kind) {
    if (!Py_IS_TYPE(item, &pmi_EntryType)) return NULL;
    pmi_ScopeObject* scope = ((pmi_ScopeEntry*)item)->scope;
    return scope != NULL && scope->stage == PMI_STAGE_HELD && scope->kind == kind ? scope : NULL;
}
/* The ContextVar whose value is the tuple of python_objects entries of a context, innermost last */
extern PyObject* pmi_objects_var;
/* pmi_allocator.c: a python_objects scope starts holding `heap` (PMI_OK, PMI_ETARGETS) and stops */
int  pmi_objects_begin(pmi_heap_t* heap);
void pmi_objects_end(void);
void pmi_objects_changed(void);  /* a python_objects() block started or stopped holding its heap */
/* Raise the exception pymimalloc's one table gives `status` (the callable Python registered) */
PyObject* pmi_raise_status(int status, const char* what);
#endif

#endif
