/* numpy's memory handler (NEP 49) backed by a pymimalloc heap. See pmi_numpy.h. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL pmi_ARRAY_API
#include <numpy/arrayobject.h>
#include <mimalloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdint.h>
#include "pmi_heap.h"
#include "pmi_numpy.h"
#include "pmi_internal.h"

#define PMI_CAPSULE_NAME "mem_handler"  /* the name numpy requires */

/* The name our handler capsules carry: numpy's own string once pmi_numpy_install found it. numpy checks a handler's
   name at every allocation and free of array data (PyDataMem_UserNEW, PyDataMem_UserFREE: PyCapsule_GetPointer, a
   strcmp with its own string), and glibc's strcmp takes its slower path when the two addresses, OR-ed, lie within
   128 bytes of a page's end: ours and numpy 2.4's did, which cost 22 instructions in each np.empty inside
   numpy_allocator() (callgrind) that numpy's default handler, comparing its string with itself, does not pay. The
   string is that of numpy's default handler capsule, which lives as long as numpy's extension module (never
   unloaded). */
static const char* pmi_capsule_name = PMI_CAPSULE_NAME;

/* A handler whose heap was closed while a context still names it (a numpy_allocator() block left from another
   context, an asyncio task that inherited the handler) serves that context's new arrays from the C library, as
   numpy's own default handler does, rather than fail every one with MemoryError (found by review). Blocks of a
   closed heap still alive are resized and freed in it as before. Its free and realloc tell the C library's blocks
   by the page map (pmi_heap_of), and only once any such block was made in this process. */
static atomic_bool pmi_np_fell_back;

static void* pmi_np_fall_back(void* ctx, size_t count, size_t size) {
    if (pmi_heap_state((pmi_heap_t*)ctx) != PMI_STATE_CLOSED) return NULL;  /* frozen, or out of memory: NULL */
    atomic_store(&pmi_np_fell_back, true);  /* before the block exists: every free that gets it sees this */
    return count == 0 ? malloc(size == 0 ? 1 : size) : calloc(count, size == 0 ? 1 : size);
}

static bool pmi_np_from_the_c_library(const void* p) {
    return atomic_load_explicit(&pmi_np_fell_back, memory_order_relaxed) && pmi_heap_of((uintptr_t)p) == 0;
}

static void* pmi_np_malloc(void* ctx, size_t size) {
    void* p = pmi_data_alloc((pmi_heap_t*)ctx, size, false);
    return p != NULL ? p : pmi_np_fall_back(ctx, 0, size);
}

static void* pmi_np_calloc(void* ctx, size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void* p = pmi_data_alloc((pmi_heap_t*)ctx, count * size, true);  /* mimalloc's zeroed allocation */
    return p != NULL ? p : pmi_np_fall_back(ctx, count == 0 ? 1 : count, size);
}

static void* pmi_np_realloc(void* ctx, void* p, size_t size) {
    if (p == NULL) return pmi_np_malloc(ctx, size);
    if (pmi_np_from_the_c_library(p)) return realloc(p, size == 0 ? 1 : size);
    return pmi_data_realloc((pmi_heap_t*)ctx, p, size);
}

static void pmi_np_free(void* ctx, void* p, size_t size) {
    (void)size;  /* counted by usable size: numpy's realloc does not tell the old size */
    if (p != NULL && pmi_np_from_the_c_library(p)) free(p);
    else pmi_data_free((pmi_heap_t*)ctx, p);
}

/* The capsule owns its handler and a counted reference to the heap wrapper, so the context outlives
   the Heap object for as long as numpy (every array keeps its handler) needs it. */
static void pmi_capsule_free(PyObject* capsule) {
    PyDataMem_Handler* handler = (PyDataMem_Handler*)PyCapsule_GetPointer(capsule, PMI_CAPSULE_NAME);
    if (handler == NULL) { PyErr_Clear(); return; }
    pmi_heap_unref_public((pmi_heap_t*)handler->allocator.ctx);
    PyMem_RawFree(handler);
}

/* A new handler capsule for `heap` (pmi_internal.h); HeapBase keeps one per heap. */
PyObject* pmi_numpy_handler_new(pmi_heap_t* heap) {
    if (!pmi_numpy_ready) {
        PyErr_SetString(PyExc_RuntimeError, "numpy's C API is not imported yet: use heap.numpy_allocator() (or "
                                            "heap.empty(), heap.zeros()), which imports it");
        return NULL;
    }
    void* address = heap;
    PyDataMem_Handler* handler = (PyDataMem_Handler*)PyMem_RawCalloc(1, sizeof(PyDataMem_Handler));
    if (handler == NULL) return PyErr_NoMemory();
    strncpy(handler->name, "pymimalloc", sizeof(handler->name) - 1);
    handler->version = 1;
    handler->allocator.ctx = address;
    handler->allocator.malloc = &pmi_np_malloc;
    handler->allocator.calloc = &pmi_np_calloc;
    handler->allocator.realloc = &pmi_np_realloc;
    handler->allocator.free = &pmi_np_free;
    PyObject* capsule = PyCapsule_New(handler, pmi_capsule_name, &pmi_capsule_free);
    if (capsule == NULL) { PyMem_RawFree(handler); return NULL; }
    pmi_heap_ref((pmi_heap_t*)address);
    return capsule;
}

PyObject* pmi_numpy_set_handler(PyObject* capsule) { return PyDataMem_SetHandler(capsule); }
PyObject* pmi_numpy_get_handler(void) { return PyDataMem_GetHandler(); }

bool pmi_numpy_is_ours(PyObject* capsule) {
    if (!PyCapsule_IsValid(capsule, PMI_CAPSULE_NAME)) return false;
    const PyDataMem_Handler* handler = (const PyDataMem_Handler*)PyCapsule_GetPointer(capsule, PMI_CAPSULE_NAME);
    return handler != NULL && handler->allocator.malloc == &pmi_np_malloc;
}

/* _numpy_call_with(handler, func, *args, **kwargs): vectorcall, so the extra hop costs no tuple copy. */
static PyObject* pmi_numpy_call_with(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    (void)self;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "_numpy_call_with(handler, func, *args, **kwargs)");
        return NULL;
    }
    int gc_was_enabled = pmi_gc_pause();  /* no finalizer inside a ContextVar's set (pmi_gc_pause) */
    PyObject* previous = PyDataMem_SetHandler(args[0]);
    pmi_gc_resume(gc_was_enabled);
    if (previous == NULL) return NULL;
    PyObject* result = PyObject_Vectorcall(args[1], args + 2, (size_t)(nargs - 2), kwnames);
    gc_was_enabled = pmi_gc_pause();
    PyObject* restored = PyDataMem_SetHandler(previous);  /* even when the call failed */
    pmi_gc_resume(gc_was_enabled);
    Py_DECREF(previous);
    if (restored == NULL) { Py_XDECREF(result); return NULL; }
    Py_DECREF(restored);
    return result;
}

/* numpy traces the array data it allocates under this tracemalloc domain (NPY_TRACE_DOMAIN, numpy's
   alloc.c); arrays made below are traced under it too, as numpy would, and numpy untracks them at free. */
#define PMI_NUMPY_TRACE_DOMAIN 389047

/* pmi_numpy_new (and _numpy_empty(handler, shape, dtype, order, zero) from Python) -> a new array whose
   data comes from the handler's heap, made without setting numpy's handler ContextVar (twice, to set and to restore).
   The array is what numpy itself makes under the handler: it owns its data (OWNDATA), its mem_handler is
   the heap's capsule, so numpy frees (and reallocs, on resize) through the handler, and tracemalloc sees
   it in numpy's domain. Returns NotImplemented for what numpy must initialise itself (object and other
   reference-holding or non-legacy dtypes, subarray dtypes) or size itself (overflow): the caller then
   goes through the handler. MemoryError if the heap is closed, frozen, or out of memory.

   Why write the array's mem_handler field (PyArrayObject_fields, in numpy's public headers but marked
   internal) instead of numpy's public way, PyDataMem_SetHandler around PyArray_Empty: measured with
   cachegrind (build CFLAGS=-mno-avx512f, 20,000 calls of heap.empty(100) from a Python loop, less a run of
   none), heap.empty costs 2,467 instructions per call this way, 6,034 through PyDataMem_SetHandler (two
   ContextVar sets per array), and numpy.empty(100) itself 2,650. The public way would make heap.empty
   2.3x numpy.empty; this way it is 0.93x. The field has kept its place and meaning since numpy 1.22 (NEP
   49), and numpy's ABI promise (a build against 2.x headers runs on later 2.x) covers the struct's layout;
   tests/test_arrays.py checks numpy's own view of such arrays (handler name, OWNDATA, resize, free). */
bool pmi_numpy_ready = false;  /* numpy's C API is imported (pmi_numpy_install) */

PyObject* pmi_numpy_new(PyObject* capsule, PyObject* shape, PyObject* dtype, PyObject* order_arg, bool zero) {
    PyDataMem_Handler* handler = (PyDataMem_Handler*)PyCapsule_GetPointer(capsule, PMI_CAPSULE_NAME);
    if (handler == NULL) return NULL;
    if (handler->allocator.malloc != &pmi_np_malloc) {  /* numpy's or another library's: its ctx is no heap */
        PyErr_SetString(PyExc_TypeError, "not a pymimalloc heap's numpy handler");
        return NULL;
    }
    NPY_ORDER order = NPY_CORDER;
    if (order_arg != NULL && !PyArray_OrderConverter(order_arg, &order)) return NULL;
    if (order != NPY_CORDER && order != NPY_FORTRANORDER) {  /* 'K' and 'A': numpy.empty refuses them too */
        PyErr_SetString(PyExc_ValueError, "only 'C' or 'F' order is permitted");
        return NULL;
    }
    PyArray_Descr* descr = NULL;
    if (dtype != NULL && !PyArray_DescrConverter2(dtype, &descr)) return NULL;
    if (descr == NULL) descr = PyArray_DescrFromType(NPY_DOUBLE);  /* dtype=None */
    PyArray_Dims dims = {NULL, 0};
    if (!PyArray_IntpConverter(shape, &dims)) { Py_DECREF(descr); return NULL; }
    bool numpy_must_do_it = !PyDataType_ISLEGACY(descr) || PyDataType_FLAGCHK(descr, NPY_NEEDS_INIT)
                            || PyDataType_FLAGCHK(descr, NPY_ITEM_REFCOUNT) || PyDataType_HASSUBARRAY(descr)
                            || PyDataType_ELSIZE(descr) == 0;
    size_t nbytes = numpy_must_do_it ? 0 : (size_t)PyDataType_ELSIZE(descr);
    for (int i = 0; i < dims.len && !numpy_must_do_it; i++) {
        const npy_intp dim = dims.ptr[i];
        if (dim < 0 || (dim != 0 && nbytes > (size_t)PTRDIFF_MAX / (size_t)dim)) numpy_must_do_it = true;
        else nbytes *= (size_t)dim;
    }
    if (numpy_must_do_it) {  /* numpy raises for negative dimensions and sizes that overflow */
        Py_DECREF(descr);
        PyDimMem_FREE(dims.ptr);
        Py_RETURN_NOTIMPLEMENTED;
    }
    const size_t allocated = nbytes == 0 ? 1 : nbytes;  /* as numpy: never a NULL data pointer */
    pmi_heap_t* heap = (pmi_heap_t*)handler->allocator.ctx;
    void* data = pmi_data_alloc(heap, allocated, zero);
    if (data == NULL) {
        Py_DECREF(descr);
        PyDimMem_FREE(dims.ptr);
        return PyErr_NoMemory();
    }
    (void)PyTraceMalloc_Track(PMI_NUMPY_TRACE_DOMAIN, (uintptr_t)data, allocated);
    PyObject* array = PyArray_NewFromDescr(&PyArray_Type, descr, dims.len, dims.ptr, NULL, data,
                                           NPY_ARRAY_WRITEABLE | (order == NPY_FORTRANORDER ? NPY_ARRAY_F_CONTIGUOUS : 0),
                                           NULL);  /* steals descr */
    PyDimMem_FREE(dims.ptr);
    if (array == NULL) {
        (void)PyTraceMalloc_Untrack(PMI_NUMPY_TRACE_DOMAIN, (uintptr_t)data);
        pmi_data_free(heap, data);
        return NULL;
    }
    PyArrayObject_fields* fields = (PyArrayObject_fields*)array;
    Py_INCREF(capsule);
    Py_XSETREF(fields->mem_handler, capsule);
    PyArray_ENABLEFLAGS((PyArrayObject*)array, NPY_ARRAY_OWNDATA);
    return array;
}

static PyObject* pmi_numpy_empty(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "_numpy_empty(handler, shape, dtype, order, zero)");
        return NULL;
    }
    const int zero = PyObject_IsTrue(args[4]);
    if (zero < 0) return NULL;
    return pmi_numpy_new(args[0], args[1], args[2], args[3], zero != 0);
}

static PyMethodDef pmi_numpy_methods[] = {
    {"_numpy_empty", (PyCFunction)(void (*)(void))pmi_numpy_empty, METH_FASTCALL, NULL},
    {"_numpy_call_with", (PyCFunction)(void (*)(void))pmi_numpy_call_with, METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};

/* numpy's default handler is the default value of its handler context variable: read in a new, empty context, that is
   what PyDataMem_GetHandler returns, whatever handler the caller's context holds. NULL with no error if not found. */
static const char* pmi_numpy_default_name(void) {
    const char* found = NULL;
    PyObject* context = PyContext_New();
    if (context != NULL && PyContext_Enter(context) == 0) {
        PyObject* handler = PyDataMem_GetHandler();
        if (handler != NULL && PyCapsule_IsValid(handler, PMI_CAPSULE_NAME)) found = PyCapsule_GetName(handler);
        Py_XDECREF(handler);
        if (PyContext_Exit(context) != 0) found = NULL;
    }
    Py_XDECREF(context);
    PyErr_Clear();
    return found;
}

/* installed as every C object is: see pmi_python.c */
int pmi_numpy_install(uintptr_t caller) {
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released the GIL around this call */
    PyObject* module = pmi_module_get(caller);
    const int status = pmi_module_status(
        module, module != NULL && _import_array() >= 0 ? pmi_module_add_functions(module, pmi_numpy_methods) : -1);
    if (status == 0) {
        const char* name = pmi_numpy_default_name();
        if (name != NULL) pmi_capsule_name = name;  /* before any capsule of ours exists: pmi_numpy_ready is not set */
        pmi_numpy_ready = true;
    }
    Py_XDECREF(module);
    PyGILState_Release(gil);
    return status;
}
