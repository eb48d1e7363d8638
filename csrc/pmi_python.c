/* pymimalloc's CPython types: Block and HeapBase. See pmi_python.h.
 *
 * How C objects that take Python objects reach Python (the one mechanism; pmi_numpy.c uses it too):
 *   cffi builds the extension module and owns its PyInit, and its cdef can only declare plain C. So every
 *   C file with Python-facing objects exposes one `int pmi_<name>_install(void)` through the cdef, which
 *   pymimalloc/_core.py (or arrays.py, for numpy) calls once. It finds the already-initialised
 *   pymimalloc._mimalloc module (pmi_module_get) and adds its types and functions to it with
 *   pmi_module_add_type() and pmi_module_add_functions() below. cffi releases the GIL around the call, so installing takes it first.
 *
 * The GIL is held from the start to the end of every method here, and never released: that is what
 * makes a Block's `exports` count and its `record` consistent without any lock. It is safe to hold
 * it across the glue (pmi_block_alloc and friends), because nothing the glue waits for (another thread's
 * allocation bracket, a close deciding, a walk, a fork's prepare handler) needs the GIL to finish: those
 * run in C with the GIL released (cffi releases it), or in the thread that holds it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <mimalloc.h>
#include "pmi_heap.h"
#include "pmi_python.h"
#include "pmi_internal.h"

PyObject* pmi_module_get(void) {
    /* sys.modules first: at interpreter start (pymimalloc.pth) the compiled module is loaded without its
       package, and importing it by name would import the whole pymimalloc package, its parent */
    PyObject* name = PyUnicode_FromString("pymimalloc._mimalloc");
    if (name == NULL) return NULL;
    PyObject* module = PyImport_GetModule(name);
    Py_DECREF(name);
    if (module == NULL && !PyErr_Occurred()) module = PyImport_ImportModule("pymimalloc._mimalloc");
    return module;
}

int pmi_module_add_functions(PyObject* module, PyMethodDef* defs) {
    for (PyMethodDef* def = defs; def->ml_name != NULL; def++) {
        PyObject* func = PyCFunction_NewEx(def, NULL, NULL);
        if (func == NULL || PyModule_AddObject(module, def->ml_name, func) < 0) { Py_XDECREF(func); return -1; }
    }
    return 0;
}

static int pmi_module_add_type(PyObject* module, const char* name, PyTypeObject* type) {
    if (PyType_Ready(type) < 0) return -1;
    Py_INCREF(type);
    if (PyModule_AddObject(module, name, (PyObject*)type) < 0) { Py_DECREF(type); return -1; }
    return 0;
}

/* Raise the exception pymimalloc/_core.py's one table gives `status` (C never decides it itself). */
static PyObject* pmi_raise_status(int status, const char* what) {
    PyObject* core = PyImport_ImportModule("pymimalloc._core");
    if (core == NULL) return NULL;
    PyObject* result = PyObject_CallMethod(core, "_raise", "is", status, what);
    Py_DECREF(core);
    if (result != NULL) {  /* _raise always raises */
        Py_DECREF(result);
        PyErr_Format(PyExc_SystemError, "_core._raise(%d) returned", status);
    }
    return NULL;
}

/* -- Block --------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pmi_block_t record;     /* the glue's record, stored here; its data is NULL once freed (or moved by realloc) */
    PyObject* heap;         /* the Heap it was allocated from (a strong reference) */
    Py_ssize_t exports;     /* buffers exported and not yet released: free and realloc refuse while > 0 */
    PyObject* weakreflist;
} pmi_BlockObject;

typedef struct {
    PyObject_HEAD
    pmi_heap_t* handle;     /* borrowed from the Python Heap's handle, which outlives this object's use */
    PyObject* numpy_handler;  /* the heap's numpy handler capsule, made on first use (arrays.py), or NULL */
} pmi_HeapBaseObject;

static PyTypeObject pmi_BlockType;
static PyTypeObject pmi_HeapBaseType;

/* A new Block of `heap` that owns no memory yet: the glue fills its record in (pmi_block_alloc/realloc).
   The object comes first, so a failed allocation only has an empty object to drop. */
static pmi_BlockObject* pmi_block_new_empty(PyObject* heap) {
    pmi_BlockObject* b = PyObject_New(pmi_BlockObject, &pmi_BlockType);
    if (b == NULL) return NULL;
    b->record.data = NULL;
    Py_INCREF(heap);
    b->heap = heap;
    b->exports = 0;
    b->weakreflist = NULL;
    return b;
}

/* The exception for a failed allocation from `heap`: Heap._allocation_failed says which (Python). */
static PyObject* pmi_allocation_failed(PyObject* heap, size_t size) {
    PyObject* result = PyObject_CallMethod(heap, "_allocation_failed", "n", (Py_ssize_t)size);
    if (result != NULL) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_SystemError, "Heap._allocation_failed did not raise");
    }
    return NULL;
}

static pmi_block_t* pmi_live(pmi_BlockObject* b) {
    if (b->record.data != NULL) return &b->record;
    PyErr_SetString(PyExc_ValueError, "the block is freed");
    return NULL;
}

static PyObject* pmi_block_tp_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    (void)type; (void)args; (void)kwargs;
    PyErr_SetString(PyExc_TypeError,
                    "Blocks are allocated with Heap.malloc(), zalloc(), calloc() or malloc_aligned()");
    return NULL;
}

static void pmi_block_dealloc(PyObject* self) {
    pmi_BlockObject* b = (pmi_BlockObject*)self;
    if (b->weakreflist != NULL) PyObject_ClearWeakRefs(self);
    pmi_block_release(&b->record);  /* nothing if freed */
    Py_CLEAR(b->heap);
    Py_TYPE(self)->tp_free(self);
}

static int pmi_block_getbuffer(PyObject* self, Py_buffer* view, int flags) {
    pmi_BlockObject* b = (pmi_BlockObject*)self;
    pmi_block_t* record = pmi_live(b);
    if (record == NULL) { view->obj = NULL; return -1; }
    if (PyBuffer_FillInfo(view, self, record->data, (Py_ssize_t)record->size, 0, flags) < 0) return -1;
    b->exports++;
    return 0;
}

static void pmi_block_releasebuffer(PyObject* self, Py_buffer* view) {
    (void)view;
    ((pmi_BlockObject*)self)->exports--;
}

static PyBufferProcs pmi_block_as_buffer = {pmi_block_getbuffer, pmi_block_releasebuffer};

static Py_ssize_t pmi_block_length(PyObject* self) {
    pmi_block_t* record = pmi_live((pmi_BlockObject*)self);
    return record == NULL ? -1 : (Py_ssize_t)record->size;
}

static PySequenceMethods pmi_block_as_sequence = {.sq_length = pmi_block_length};

static PyObject* pmi_block_free(PyObject* self, PyObject* unused) {
    (void)unused;
    pmi_BlockObject* b = (pmi_BlockObject*)self;
    pmi_block_t* record = &b->record;
    if (record->data == NULL) Py_RETURN_NONE;
    if (b->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "cannot free a Block while views of it are exported; release them first");
        return NULL;
    }
    if (pmi_heap_state(record->owner) == PMI_STATE_FROZEN) return pmi_raise_status(PMI_EFROZEN, "free");
    pmi_block_release(record);
    Py_RETURN_NONE;
}

static PyObject* pmi_block_enter(PyObject* self, PyObject* unused) {
    (void)unused;
    if (pmi_live((pmi_BlockObject*)self) == NULL) return NULL;
    Py_INCREF(self);
    return self;
}

static PyObject* pmi_block_exit(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    (void)args; (void)nargs;
    return pmi_block_free(self, NULL);
}

/* copy.copy(block): a new Block from the same heap holding a copy of the contents, like a bytearray's */
static PyObject* pmi_block_copy(PyObject* self, PyObject* unused) {
    (void)unused;
    pmi_BlockObject* b = (pmi_BlockObject*)self;
    pmi_block_t* record = pmi_live(b);
    if (record == NULL) return NULL;
    pmi_BlockObject* twin = pmi_block_new_empty(b->heap);
    if (twin == NULL) return NULL;
    if (pmi_block_alloc(record->owner, &twin->record, record->size, 0, false) == NULL) {
        Py_DECREF(twin);
        return pmi_allocation_failed(b->heap, record->size);
    }
    memcpy(twin->record.data, record->data, record->size);
    return (PyObject*)twin;
}

static PyObject* pmi_block_deepcopy(PyObject* self, PyObject* memo) {
    (void)memo;
    return pmi_block_copy(self, NULL);
}

static PyObject* pmi_block_reduce_ex(PyObject* self, PyObject* protocol) {
    (void)self; (void)protocol;
    PyErr_SetString(PyExc_TypeError,
                    "a Block cannot be pickled: its memory lives only in this process; pickle bytes(block)");
    return NULL;
}

static PyObject* pmi_block_repr(PyObject* self) {
    const pmi_block_t* record = &((pmi_BlockObject*)self)->record;
    if (record->data == NULL) return PyUnicode_FromString("<pymimalloc.Block freed>");
    return PyUnicode_FromFormat("<pymimalloc.Block %zu bytes at %p>", record->size, record->data);
}

static PyObject* pmi_block_get_address(PyObject* self, void* closure) {
    (void)closure;
    pmi_block_t* record = pmi_live((pmi_BlockObject*)self);
    return record == NULL ? NULL : PyLong_FromVoidPtr(record->data);
}

static PyObject* pmi_block_get_size(PyObject* self, void* closure) {
    (void)closure;
    pmi_block_t* record = pmi_live((pmi_BlockObject*)self);
    return record == NULL ? NULL : PyLong_FromSize_t(record->size);
}

static PyObject* pmi_block_get_usable_size(PyObject* self, void* closure) {
    (void)closure;
    pmi_block_t* record = pmi_live((pmi_BlockObject*)self);
    return record == NULL ? NULL : PyLong_FromSize_t(mi_usable_size(record->data));
}

static PyObject* pmi_block_get_heap(PyObject* self, void* closure) {
    (void)closure;
    PyObject* heap = ((pmi_BlockObject*)self)->heap;
    Py_INCREF(heap);
    return heap;
}

static PyObject* pmi_block_get_freed(PyObject* self, void* closure) {
    (void)closure;
    return PyBool_FromLong(((pmi_BlockObject*)self)->record.data == NULL);
}

static PyObject* pmi_block_get_view(PyObject* self, void* closure) {
    (void)closure;
    return PyMemoryView_FromObject(self);
}

static PyObject* pmi_block_get_exports(PyObject* self, void* closure) {
    (void)closure;
    return PyLong_FromSsize_t(((pmi_BlockObject*)self)->exports);
}

static PyGetSetDef pmi_block_getset[] = {
    {"address", pmi_block_get_address, NULL, "The block's start address (an int). Raises ValueError once freed.", NULL},
    {"size", pmi_block_get_size, NULL, "The number of bytes requested. Raises ValueError once freed.", NULL},
    {"usable_size", pmi_block_get_usable_size, NULL,
     "The bytes actually available in the block (>= size), as mimalloc reports. ValueError once freed.", NULL},
    {"heap", pmi_block_get_heap, NULL, "The Heap the block was allocated from (it may be closed since).", NULL},
    {"freed", pmi_block_get_freed, NULL, "True once the Block has given up its memory.", NULL},
    {"view", pmi_block_get_view, NULL,
     "A new writable memoryview of the block's size bytes (format B), the same as memoryview(block).\n\n"
     "Every view keeps the Block alive; free() and Heap.realloc() raise BufferError until every view is\n"
     "released. Raises ValueError once freed.", NULL},
    {"exports", pmi_block_get_exports, NULL, "How many buffers of the block are exported now (views, arrays).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef pmi_block_methods[] = {
    {"free", pmi_block_free, METH_NOARGS,
     "Give the memory back to its heap. Idempotent.\n\n"
     "Raises BufferError while a buffer of the block is exported (release the views first), as\n"
     "mmap.close() does, and RuntimeError while a visit or snapshot of its heap is in progress."},
    {"__enter__", pmi_block_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pmi_block_exit, METH_FASTCALL, NULL},
    {"__copy__", pmi_block_copy, METH_NOARGS,
     "A new Block from the same heap holding a copy of this block's contents, like copying a bytearray.\n\n"
     "Raises ValueError if this block is freed or its heap is closed, as heap.malloc does."},
    {"__deepcopy__", pmi_block_deepcopy, METH_O, NULL},
    {"__reduce_ex__", pmi_block_reduce_ex, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject pmi_BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymimalloc.Block",
    .tp_basicsize = sizeof(pmi_BlockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A block of size bytes allocated from a pymimalloc Heap, and a writable buffer over them.\n\n"
              "Blocks come from Heap.malloc() and its siblings, never from this constructor. The Block owns its\n"
              "memory: it is freed by free(), by leaving a `with block:` statement, or when the Block is\n"
              "garbage-collected, whichever comes first, but never while a buffer of it is exported:\n"
              "memoryview(block), block.view, bytes(block) and numpy.frombuffer(block) all work directly.",
    .tp_new = pmi_block_tp_new,
    .tp_dealloc = pmi_block_dealloc,
    .tp_repr = pmi_block_repr,
    .tp_as_buffer = &pmi_block_as_buffer,
    .tp_as_sequence = &pmi_block_as_sequence,
    .tp_weaklistoffset = offsetof(pmi_BlockObject, weakreflist),
    .tp_methods = pmi_block_methods,
    .tp_getset = pmi_block_getset,
};

/* -- HeapBase: the allocation methods of pymimalloc.Heap ------------------------------------------ */

static pmi_heap_t* pmi_handle_of(PyObject* self) {
    pmi_heap_t* h = ((pmi_HeapBaseObject*)self)->handle;
    if (h == NULL) PyErr_SetString(PyExc_ValueError, "the Heap was never initialised (call Heap())");
    return h;
}

/* A size that needs no Python-level checks: an exact int in 0..PTRDIFF_MAX. -1 otherwise (no error set). */
static Py_ssize_t pmi_plain_size(PyObject* arg) {
    if (!PyLong_CheckExact(arg)) return -1;
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size < 0) PyErr_Clear();  /* too large, or negative: the slow path says which */
    return size;
}

static PyObject* pmi_heap_allocate_checked(PyObject* self, size_t size, size_t alignment, bool zero) {
    pmi_heap_t* h = pmi_handle_of(self);
    if (h == NULL) return NULL;
    pmi_BlockObject* b = pmi_block_new_empty(self);
    if (b == NULL) return NULL;
    if (pmi_block_alloc(h, &b->record, size, alignment, zero) == NULL) {
        Py_DECREF(b);
        return pmi_allocation_failed(self, size);
    }
    return (PyObject*)b;
}

/* malloc/zalloc: plain sizes go straight to mimalloc; anything else goes through Heap._allocate_checked's
   Python-level validation (one table of messages: _core.as_size) and comes back to _allocate. */
static PyObject* pmi_heap_malloc_or_zalloc(PyObject* self, PyObject* arg, bool zero) {
    const Py_ssize_t size = pmi_plain_size(arg);
    if (size >= 0) return pmi_heap_allocate_checked(self, (size_t)size, 0, zero);
    return PyObject_CallMethod(self, "_allocate_unchecked", "OnO", arg, (Py_ssize_t)0, zero ? Py_True : Py_False);
}

static PyObject* pmi_heap_malloc(PyObject* self, PyObject* arg) { return pmi_heap_malloc_or_zalloc(self, arg, false); }
static PyObject* pmi_heap_zalloc(PyObject* self, PyObject* arg) { return pmi_heap_malloc_or_zalloc(self, arg, true); }

/* _allocate(size, alignment, zero), with size and alignment already checked by the caller */
static PyObject* pmi_heap_allocate(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) { PyErr_SetString(PyExc_TypeError, "_allocate(size, alignment, zero)"); return NULL; }
    const size_t size = PyLong_AsSize_t(args[0]);
    if (size == (size_t)-1 && PyErr_Occurred()) return NULL;
    const size_t alignment = PyLong_AsSize_t(args[1]);
    if (alignment == (size_t)-1 && PyErr_Occurred()) return NULL;
    const int zero = PyObject_IsTrue(args[2]);
    if (zero < 0) return NULL;
    return pmi_heap_allocate_checked(self, size, alignment, zero != 0);
}

static PyObject* pmi_heap_realloc(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "realloc(block, size)"); return NULL; }
    PyObject* block = args[0];
    if (!PyObject_TypeCheck(block, &pmi_BlockType)) {
        PyErr_Format(PyExc_TypeError, "realloc needs a Block, not %s", Py_TYPE(block)->tp_name);
        return NULL;
    }
    const Py_ssize_t size = pmi_plain_size(args[1]);
    if (size < 0) return PyObject_CallMethod(self, "_realloc_unchecked", "OO", block, args[1]);
    pmi_heap_t* h = pmi_handle_of(self);
    if (h == NULL) return NULL;
    pmi_BlockObject* b = (pmi_BlockObject*)block;
    pmi_block_t* record = pmi_live(b);
    if (record == NULL) return NULL;
    if (b->heap != self) {
        PyErr_SetString(PyExc_ValueError, "the block was allocated from another heap");
        return NULL;
    }
    if (pmi_heap_state(h) != PMI_STATE_OPEN) {  /* a closed (or frozen) heap is the first thing to report */
        PyObject* result = PyObject_CallMethod(self, "_check_usable", NULL);
        if (result == NULL) return NULL;
        Py_DECREF(result);  /* it opened again meanwhile: go on */
    }
    if (b->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "cannot realloc a Block while views of it are exported; release them first");
        return NULL;
    }
    pmi_BlockObject* moved = pmi_block_new_empty(self);
    if (moved == NULL) return NULL;
    if (pmi_block_realloc(record, &moved->record, (size_t)size) == NULL) {
        Py_DECREF(moved);
        return pmi_allocation_failed(self, (size_t)size);
    }
    return (PyObject*)moved;  /* `b` now owns nothing: it reads as freed */
}

/* _bind_handle(address): the pmi_heap_t* the Python Heap owns (through its _handle), as an int */
static PyObject* pmi_heap_bind_handle(PyObject* self, PyObject* arg) {
    void* handle = PyLong_AsVoidPtr(arg);
    if (handle == NULL && PyErr_Occurred()) return NULL;
    if (((pmi_HeapBaseObject*)self)->handle != NULL) {
        PyErr_SetString(PyExc_TypeError, "this Heap already has its mimalloc heap");
        return NULL;
    }
    ((pmi_HeapBaseObject*)self)->handle = (pmi_heap_t*)handle;
    Py_RETURN_NONE;
}

/* heap.empty(shape, dtype=float, order="C") and heap.zeros: the array is built in C (pmi_numpy_new) once the
   heap has its numpy handler; before that, and for what numpy must make itself, Heap._empty_slow or
   _zeros_slow (Python) run instead, with the same arguments. */
static PyObject* pmi_heap_numpy_new(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames,
                                    bool zero) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* handler = ((pmi_HeapBaseObject*)self)->numpy_handler;
    PyObject* dtype = nargs > 1 ? args[1] : NULL;
    PyObject* order = nargs > 2 ? args[2] : NULL;
    bool fast = pmi_numpy_ready && handler != NULL && handler != Py_None && nargs >= 1 && nargs <= 3;
    const Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw && fast; i++) {
        PyObject* name = PyTuple_GET_ITEM(kwnames, i);
        if (dtype == NULL && PyUnicode_CompareWithASCIIString(name, "dtype") == 0) dtype = args[nargs + i];
        else if (order == NULL && PyUnicode_CompareWithASCIIString(name, "order") == 0) order = args[nargs + i];
        else fast = false;
    }
    if (fast) {
        PyObject* array = pmi_numpy_new(handler, args[0], dtype, order, zero);
        if (array != NULL && array != Py_NotImplemented) return array;
        if (array == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_MemoryError)) return NULL;
            /* closed or frozen heaps say so (Heap._numpy_failed raises); otherwise it was memory */
#if PY_VERSION_HEX >= 0x030C0000
            PyObject* memory_error = PyErr_GetRaisedException();
            PyObject* result = PyObject_CallMethod(self, "_numpy_failed", NULL);
            if (result == NULL) { Py_DECREF(memory_error); return NULL; }
            Py_DECREF(result);
            PyErr_SetRaisedException(memory_error);
#else
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyObject* result = PyObject_CallMethod(self, "_numpy_failed", NULL);
            if (result == NULL) { Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(traceback); return NULL; }
            Py_DECREF(result);
            PyErr_Restore(type, value, traceback);
#endif
            return NULL;
        }
        Py_DECREF(array);  /* NotImplemented: numpy makes it, through the handler */
    }
    PyObject* slow = PyObject_GetAttrString(self, zero ? "_zeros_slow" : "_empty_slow");
    if (slow == NULL) return NULL;
    PyObject* array = PyObject_Vectorcall(slow, args, nargsf, kwnames);
    Py_DECREF(slow);
    return array;
}

static PyObject* pmi_heap_empty(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    return pmi_heap_numpy_new(self, args, nargsf, kwnames, false);
}

static PyObject* pmi_heap_zeros(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    return pmi_heap_numpy_new(self, args, nargsf, kwnames, true);
}

static void pmi_heap_base_dealloc(PyObject* self) {
    Py_CLEAR(((pmi_HeapBaseObject*)self)->numpy_handler);
    Py_TYPE(self)->tp_free(self);
}

static PyMemberDef pmi_heap_members[] = {
    {"_numpy_handler", T_OBJECT, offsetof(pmi_HeapBaseObject, numpy_handler), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef pmi_heap_methods[] = {
    {"empty", (PyCFunction)(void (*)(void))pmi_heap_empty, METH_FASTCALL | METH_KEYWORDS,
     "numpy.empty with the data in this heap. ValueError if closed, RuntimeError if frozen.\n\n"
     "The array is the one numpy makes with the heap's handler set (it owns its data, and numpy frees it\n"
     "through the handler), built in C without setting numpy's handler ContextVar."},
    {"zeros", (PyCFunction)(void (*)(void))pmi_heap_zeros, METH_FASTCALL | METH_KEYWORDS,
     "numpy.zeros with the data in this heap, zeroed by mimalloc (its calloc), not by a memset."},
    {"malloc", pmi_heap_malloc, METH_O,
     "Allocate a Block of size bytes (uninitialised contents).\n\n"
     "Raises TypeError if size is not an int, ValueError if it is negative or the heap is closed,\n"
     "RuntimeError while a visit or snapshot holds the heap frozen, MemoryError if it is too large or\n"
     "memory runs out."},
    {"zalloc", pmi_heap_zalloc, METH_O, "Allocate a zero-filled Block of size bytes. Raises as malloc."},
    {"_allocate", (PyCFunction)(void (*)(void))pmi_heap_allocate, METH_FASTCALL, NULL},
    {"realloc", (PyCFunction)(void (*)(void))pmi_heap_realloc, METH_FASTCALL,
     "Resize block to size bytes, keeping its contents up to the smaller size.\n\n"
     "Returns a new Block; the old one is freed (using it raises ValueError). Raises ValueError if the\n"
     "block belongs to another heap or is freed, or this heap is closed; BufferError while buffers of the\n"
     "block are exported; MemoryError if memory runs out (the old block is then unchanged)."},
    {"_bind_handle", pmi_heap_bind_handle, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject pmi_HeapBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymimalloc._mimalloc.HeapBase",
    .tp_basicsize = sizeof(pmi_HeapBaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The allocation methods of pymimalloc.Heap, in C (the Python class subclasses this).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = pmi_heap_base_dealloc,
    .tp_methods = pmi_heap_methods,
    .tp_members = pmi_heap_members,
};

int pmi_python_install(void) {
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released the GIL around this call */
    int status = -1;
    PyObject* module = pmi_module_get();
    if (module != NULL && pmi_module_add_type(module, "Block", &pmi_BlockType) == 0
        && pmi_module_add_type(module, "HeapBase", &pmi_HeapBaseType) == 0) {
        status = 0;
    }
    if (status < 0) PyErr_Print();
    Py_XDECREF(module);
    PyGILState_Release(gil);
    return status;
}
