/* mimalloc serving CPython's allocator domains at run time. See pmi_allocator.h.
 *
 * CPython lets a running interpreter change an allocator domain only with a hook: a new allocator that
 * hands what it does not own to the previous one (PyMem_SetAllocator). So for each domain:
 *   - new allocations come from one mimalloc heap of their own (pmi_python_heap, never closed or walked
 *     by pymimalloc), rounded up to 16 bytes: CPython promises 16-byte alignment, and mimalloc gives it
 *     to every block of 16 bytes or more (its 8-byte size class is the only one that is not); a
 *     zero-byte request is a distinct 16-byte block;
 *   - free and realloc look the pointer up in mimalloc's page map (mi_is_in_heap_region, the lookup
 *     mi_free itself does): ours go to mimalloc, anything else (allocated before the hook, or while the
 *     domain was not routed) goes to the previous allocator, which owns it;
 *   - the hook stays for the life of the process. Unrouting (pymimalloc.uninstall()) only sends new
 *     allocations back to the previous allocator: mimalloc's blocks are still freed by the hook.
 * Each domain has its own functions, so no call depends on the `ctx` pointer: a thread that reads
 * CPython's allocator struct while it is being written (the RAW domain is called without the GIL) gets a
 * working function whatever half it sees.
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

static inline void* pmi_mi_malloc(size_t size) { return mi_heap_malloc(pmi_python_heap, pmi_at_least(size)); }

static inline void* pmi_mi_calloc(size_t nelem, size_t elsize) {
    size_t total;
    if (__builtin_mul_overflow(nelem, elsize, &total)) return NULL;
    return mi_heap_zalloc(pmi_python_heap, pmi_at_least(total));
}

/* The hook's four functions for one domain. RAW brackets its mimalloc calls (see the top of this file). */
#define PMI_DOMAIN_FUNCTIONS(name, domain, bit, enter, leave)                                                   \
    static void* pmi_##name##_malloc(void* ctx, size_t size) {                                                 \
        (void)ctx;                                                                                             \
        if (!(atomic_load_explicit(&pmi_routed, memory_order_relaxed) & (bit)))                                \
            return pmi_previous[domain].malloc(pmi_previous[domain].ctx, size);                                \
        enter; void* p = pmi_mi_malloc(size); leave;                                                           \
        return p;                                                                                              \
    }                                                                                                          \
    static void* pmi_##name##_calloc(void* ctx, size_t nelem, size_t elsize) {                                 \
        (void)ctx;                                                                                             \
        if (!(atomic_load_explicit(&pmi_routed, memory_order_relaxed) & (bit)))                                \
            return pmi_previous[domain].calloc(pmi_previous[domain].ctx, nelem, elsize);                       \
        enter; void* p = pmi_mi_calloc(nelem, elsize); leave;                                                  \
        return p;                                                                                              \
    }                                                                                                          \
    static void* pmi_##name##_realloc(void* ctx, void* ptr, size_t size) {                                     \
        if (ptr == NULL) return pmi_##name##_malloc(ctx, size);                                                \
        if (!mi_is_in_heap_region(ptr)) return pmi_previous[domain].realloc(pmi_previous[domain].ctx, ptr, size); \
        enter; void* p = mi_heap_realloc(pmi_python_heap, ptr, pmi_at_least(size)); leave;                     \
        return p;                                                                                              \
    }                                                                                                          \
    static void pmi_##name##_free(void* ctx, void* ptr) {                                                      \
        (void)ctx;                                                                                             \
        if (ptr == NULL) return;                                                                               \
        if (!mi_is_in_heap_region(ptr)) { pmi_previous[domain].free(pmi_previous[domain].ctx, ptr); return; }  \
        enter; mi_free(ptr); leave;                                                                            \
    }

PMI_DOMAIN_FUNCTIONS(raw, PYMEM_DOMAIN_RAW, PMI_DOMAIN_RAW, pmi_world_enter(), pmi_world_leave())
PMI_DOMAIN_FUNCTIONS(mem, PYMEM_DOMAIN_MEM, PMI_DOMAIN_MEM, (void)0, (void)0)
PMI_DOMAIN_FUNCTIONS(obj, PYMEM_DOMAIN_OBJ, PMI_DOMAIN_OBJ, (void)0, (void)0)

static const struct {
    int bit;
    PyMemAllocatorDomain domain;
    PyMemAllocatorEx hook;
} pmi_domains[] = {
    {PMI_DOMAIN_RAW, PYMEM_DOMAIN_RAW, {NULL, pmi_raw_malloc, pmi_raw_calloc, pmi_raw_realloc, pmi_raw_free}},
    {PMI_DOMAIN_MEM, PYMEM_DOMAIN_MEM, {NULL, pmi_mem_malloc, pmi_mem_calloc, pmi_mem_realloc, pmi_mem_free}},
    {PMI_DOMAIN_OBJ, PYMEM_DOMAIN_OBJ, {NULL, pmi_obj_malloc, pmi_obj_calloc, pmi_obj_realloc, pmi_obj_free}},
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
    PyMemAllocatorEx current;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &current);
    unsigned char* p = current.malloc(current.ctx, 16);
    if (p == NULL) return false;
    bool debug = (p[-1] == 0xFD);
    for (int i = 16; i < 24 && debug; i++) debug = (p[i] == 0xFD);
    current.free(current.ctx, p);
    return debug;
}

static PyObject* pmi_allocator_hook(PyObject* self, PyObject* arg) {
    (void)self;
    const long mask = PyLong_AsLong(arg);
    if (mask == -1 && PyErr_Occurred()) return NULL;
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
        atomic_fetch_or(&pmi_routed, pmi_domains[i].bit);  /* before the hook is seen: it allocates at once */
        PyMemAllocatorEx hook = pmi_domains[i].hook;
        PyMem_SetAllocator(domain, &hook);
        atomic_fetch_or(&pmi_hooked, pmi_domains[i].bit);
    }
    atomic_fetch_or(&pmi_routed, (int)mask & atomic_load(&pmi_hooked));
    return PyLong_FromLong(PMI_OK);
}

static PyObject* pmi_allocator_route(PyObject* self, PyObject* arg) {
    (void)self;
    const long mask = PyLong_AsLong(arg);
    if (mask == -1 && PyErr_Occurred()) return NULL;
    atomic_store(&pmi_routed, (int)mask & atomic_load(&pmi_hooked));
    Py_RETURN_NONE;
}

static PyObject* pmi_allocator_state(PyObject* self, PyObject* unused) {
    (void)self; (void)unused;
    return Py_BuildValue("ii", atomic_load(&pmi_hooked), atomic_load(&pmi_routed));
}

static PyMethodDef pmi_allocator_functions[] = {
    {"_allocator_hook", pmi_allocator_hook, METH_O, NULL},
    {"_allocator_route", pmi_allocator_route, METH_O, NULL},
    {"_allocator_state", pmi_allocator_state, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int pmi_allocator_install(void) {
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released the GIL around this call */
    PyObject* module = PyImport_ImportModule("pymimalloc._mimalloc");
    const int status = (module != NULL && pmi_module_add_functions(module, pmi_allocator_functions) == 0) ? 0 : -1;
    if (status < 0) PyErr_Print();
    Py_XDECREF(module);
    PyGILState_Release(gil);
    return status;
}
