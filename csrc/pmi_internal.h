/* Shared between pymimalloc's C files only; not part of the cdef. Include after pmi_heap.h, which has no
   include guards (cffi reads it as it is). */
#ifndef PMI_INTERNAL_H
#define PMI_INTERNAL_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <mimalloc.h>

void*      pmi_meta_realloc(void* p, size_t size);  /* our private meta heap (never a user's heap) */
void       pmi_meta_free(void* p);
int        pmi_heap_enter(pmi_heap_t* heap);        /* bracket an allocating use of the heap: PMI_OK or why not */
void       pmi_heap_leave(pmi_heap_t* heap);
int        pmi_heap_enter_read(pmi_heap_t* heap);   /* bracket reading the heap (statistics): PMI_OK or PMI_ECLOSED */
void       pmi_heap_leave_read(pmi_heap_t* heap);
void       pmi_world_enter(void);                   /* bracket a process-wide mimalloc call (see pmi_heap.h) */
void       pmi_world_leave(void);
mi_heap_t* pmi_heap_raw(pmi_heap_t* heap);
mi_heap_t* pmi_heap_new_unwrapped(void);            /* a mimalloc heap pymimalloc never closes (Python's own) */
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
mi_heap_t* pmi_page_owner(const struct mi_page_s* page);
void       pmi_page_free(struct mi_page_s* page, void* p);
void*      pmi_fast_malloc(mi_heap_t* heap, size_t size);  /* mi_heap_malloc, inlined likewise */

void       pmi_thp_default(void);  /* at import: no transparent huge pages unless MIMALLOC_ALLOW_THP says so */

/* Array data for numpy's handler: counted in the heap by usable size; deferred while frozen. */
void*      pmi_data_alloc(pmi_heap_t* heap, size_t size, bool zero);
void*      pmi_data_realloc(pmi_heap_t* heap, void* p, size_t size);
void       pmi_data_free(pmi_heap_t* heap, void* p);

#ifdef Py_PYTHON_H
/* The pymimalloc._mimalloc module (a new reference), and adding functions to it (see pmi_python.c for the one
   mechanism). */
PyObject* pmi_module_get(void);
int pmi_module_add_functions(PyObject* module, PyMethodDef* defs);
/* A new array with its data in the heap of numpy handler `capsule` (pmi_numpy.c); NotImplemented when
   numpy must make it itself. Usable once pmi_numpy_ready (numpy's C API imported). dtype and order may
   be NULL (float64, C order). */
extern bool pmi_numpy_ready;
PyObject* pmi_numpy_new(PyObject* capsule, PyObject* shape, PyObject* dtype, PyObject* order, bool zero);
#endif

#endif
