/* pymimalloc's CPython types: Block and HeapBase. See pmi_python.h.
 *
 * How C objects that take Python objects reach Python (the one mechanism; pmi_numpy.c uses it too):
 *   cffi builds the extension module and owns its PyInit, and its cdef can only declare plain C. So every
 *   C file with Python-facing objects exposes one `int pmi_<name>_install(uintptr_t module)` through the cdef,
 *   which pymimalloc/_core.py (or _startup.py) calls once with id() of its pymimalloc._mimalloc. cffi releases
 *   the GIL around the call, so installing takes it first (PyGILState_Ensure). It finds the already-initialised
 *   module (pmi_module_get) and adds its types and functions to it with pmi_module_add_type() and
 *   pmi_module_add_functions() below; or, called in a sub-interpreter, does nothing and returns
 *   PMI_PYTHON_EINTERPRETER (pmi_python.h).
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

PyObject* pmi_module_get(uintptr_t caller) {
    /* From sys.modules only, where the caller's import put it (at interpreter start, pymimalloc.pth loads it
       without its package; importing it by name would import the whole package, its parent).
       Nothing in a sub-interpreter: the compiled module's state (heaps, the allocator hook, the C types, the
       Python functions registered into it) is the process's, and the main interpreter's. PyGILState_Ensure
       took the GIL with the thread state this thread last bound: on 3.12 and later the caller's, whose
       interpreter then is not the main one; on 3.11 the one it started in, the main interpreter's even for
       a sub-interpreter's caller, where the module found then is not the caller's (or none). */
    PyObject* name = PyUnicode_FromString("pymimalloc._mimalloc");
    if (name == NULL) return NULL;
    PyObject* module = PyImport_GetModule(name);
    Py_DECREF(name);
    if (module != NULL && ((uintptr_t)module != caller || PyInterpreterState_Get() != PyInterpreterState_Main())) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

int pmi_module_status(PyObject* module, int added) {
    if (module == NULL && !PyErr_Occurred()) return PMI_PYTHON_EINTERPRETER;
    if (module != NULL && added == 0) return 0;
    PyErr_Print();
    return -1;
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

/* Raise the exception pymimalloc's one table of statuses gives `status` (C never decides it itself). Python
   registers that table's function once, at import (_set_status_raiser), so C names nothing in Python. */
static PyObject* pmi_status_raiser;

PyObject* pmi_raise_status(int status, const char* what) {
    if (pmi_status_raiser == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%s: pymimalloc status %d", what, status);
        return NULL;
    }
    PyObject* result = PyObject_CallFunction(pmi_status_raiser, "is", status, what);
    if (result != NULL) {  /* the raiser always raises */
        Py_DECREF(result);
        PyErr_Format(PyExc_SystemError, "the status raiser returned for status %d", status);
    }
    return NULL;
}

/* The Python slow paths of HeapBase's C methods, registered once by pymimalloc/heap.py (_set_slow_paths):
   positional, so a renamed Python function breaks the registration at import, never a call from C. Each
   takes the Heap first. */
enum { PMI_SLOW_ALLOCATE, PMI_SLOW_REALLOC, PMI_SLOW_ALLOCATION_FAILED, PMI_SLOW_RAISE_IF_UNUSABLE, PMI_SLOW_EMPTY,
       PMI_SLOW_ZEROS, PMI_SLOW_COUNT };
static PyObject* pmi_slow[PMI_SLOW_COUNT];

static PyObject* pmi_set_slow_paths(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != PMI_SLOW_COUNT) {
        PyErr_SetString(PyExc_TypeError, "_set_slow_paths(allocate, realloc, allocation_failed, raise_if_unusable, "
                                         "empty, zeros)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        if (!PyCallable_Check(args[i])) { PyErr_SetString(PyExc_TypeError, "slow paths must be callable"); return NULL; }
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        Py_XSETREF(pmi_slow[i], args[i]);
    }
    Py_RETURN_NONE;
}

/* slow path `which`, called as which(heap, *args, **kwargs) (vectorcall, no tuple) */
static PyObject* pmi_slow_call(int which, PyObject* heap, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    PyObject* func = pmi_slow[which];
    if (func == NULL) {
        PyErr_SetString(PyExc_SystemError, "pymimalloc's slow paths are not registered (pymimalloc.heap not imported)");
        return NULL;
    }
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    const Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject* small[8];
    PyObject** all = total + 1 <= 8 ? small : (PyObject**)PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject*));
    if (all == NULL) return PyErr_NoMemory();
    all[0] = heap;
    if (total > 0) memcpy(all + 1, args, (size_t)total * sizeof(PyObject*));
    PyObject* result = PyObject_Vectorcall(func, all, (size_t)(nargs + 1), kwnames);
    if (all != small) PyMem_Free(all);
    return result;
}

/* A slow path that must raise (or return None when there is nothing to raise): NULL with its exception, or
   0 when it returned */
static int pmi_slow_raise(int which, PyObject* heap, PyObject* arg) {
    PyObject* args[1] = {arg};
    PyObject* result = pmi_slow_call(which, heap, args, arg == NULL ? 0 : 1, NULL);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

static PyObject* pmi_set_status_raiser(PyObject* self, PyObject* raiser) {
    (void)self;
    if (!PyCallable_Check(raiser)) { PyErr_SetString(PyExc_TypeError, "the status raiser must be callable"); return NULL; }
    Py_INCREF(raiser);
    Py_XSETREF(pmi_status_raiser, raiser);
    Py_RETURN_NONE;
}

/* -- Block --------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pmi_block_t record;     /* the glue's record, stored here; its data is NULL once freed (or moved by realloc) */
    PyObject* heap;         /* the Heap it was allocated from (a strong reference) */
    Py_ssize_t exports;     /* buffers exported and not yet released: free and realloc refuse while > 0 */
    PyObject* weakreflist;
} pmi_BlockObject;

/* A Heap's C part owns everything C dereferences: its wrapper and its numpy handler are reachable from
   Python only through methods that cannot replace them. */
typedef struct {
    PyObject_HEAD
    pmi_heap_t* handle;       /* a counted reference (NULL until _open), released in dealloc */
    PyObject* numpy_handler;  /* the heap's numpy handler capsule, made on first use, or NULL */
} pmi_HeapBaseObject;

static PyTypeObject pmi_BlockType;
static PyTypeObject pmi_HeapBaseType;

/* A new Block of `heap` that owns no memory yet: the glue fills its record in (pmi_block_alloc/realloc).
   The object comes first, so a failed allocation only has an empty object to drop. */
static pmi_BlockObject* pmi_block_new_empty(PyObject* heap) {
    pmi_BlockObject* b = PyObject_GC_New(pmi_BlockObject, &pmi_BlockType);
    if (b == NULL) return NULL;
    b->record.data = NULL;
    Py_INCREF(heap);
    b->heap = heap;
    b->exports = 0;
    b->weakreflist = NULL;
    PyObject_GC_Track(b);
    return b;
}

/* The exception for a failed allocation from `heap`: the allocation_failed slow path says which (Python). */
static PyObject* pmi_allocation_failed(PyObject* heap, size_t size) {
    PyObject* n = PyLong_FromSize_t(size);
    if (n == NULL) return NULL;
    const int raised = pmi_slow_raise(PMI_SLOW_ALLOCATION_FAILED, heap, n);
    Py_DECREF(n);
    if (raised == 0) PyErr_SetString(PyExc_SystemError, "the allocation_failed slow path did not raise");
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
    PyObject_GC_UnTrack(self);
    if (b->weakreflist != NULL) PyObject_ClearWeakRefs(self);
    pmi_block_release(&b->record);  /* nothing if freed */
    Py_CLEAR(b->heap);
    Py_TYPE(self)->tp_free(self);
}

/* A Block is a container of the garbage collector for its reference to its Heap: a Heap subclass that keeps its
   Blocks (self.kept.append(self.malloc(n))) makes a cycle the collector must see, or the heap and all its memory
   stay for good (a review found 200 such heaps of 1 MiB alive after gc.collect()). No tp_clear: the cycle is broken
   on the Heap's side (its __dict__), and a Block's methods may rely on its heap being there. */
static int pmi_block_traverse(PyObject* self, visitproc visit, void* arg) {
    Py_VISIT(((pmi_BlockObject*)self)->heap);
    return 0;
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
    /* the heap's state first, as realloc reports it (the state machine found the two orders differ) */
    if (pmi_heap_state(record->owner) == PMI_STATE_FROZEN) return pmi_raise_status(PMI_EFROZEN, "free");
    if (b->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "cannot free a Block while views of it are exported; release them first");
        return NULL;
    }
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
     "free($self, /)\n--\n\nGive the memory back to its heap. Idempotent.\n\n"
     "Raises BufferError while a buffer of the block is exported (release the views first), as\n"
     "mmap.close() does, and RuntimeError while a visit or snapshot of its heap is in progress."},
    {"__enter__", pmi_block_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nThe block itself."},
    {"__exit__", (PyCFunction)(void (*)(void))pmi_block_exit, METH_FASTCALL,
     "__exit__($self, exc_type=None, exc=None, tb=None, /)\n--\n\nFree the block (as free())."},
    {"__copy__", pmi_block_copy, METH_NOARGS,
     "__copy__($self, /)\n--\n\nA new Block from the same heap holding a copy of this block's contents, like copying a bytearray.\n\n"
     "Raises ValueError if this block is freed or its heap is closed, as heap.malloc does."},
    {"__deepcopy__", pmi_block_deepcopy, METH_O, "__deepcopy__($self, memo, /)\n--\n\nAs __copy__."},
    {"__reduce_ex__", pmi_block_reduce_ex, METH_O, "__reduce_ex__($self, protocol, /)\n--\n\nRaises TypeError."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject pmi_BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymimalloc.Block",
    .tp_basicsize = sizeof(pmi_BlockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = pmi_block_traverse,
    .tp_free = PyObject_GC_Del,
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

static PyObject* pmi_heap_allocate_sized(PyObject* self, size_t size, size_t alignment, bool zero) {
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

/* malloc/zalloc: plain sizes go straight to mimalloc; anything else goes through the allocate slow path's
   Python-level validation (one table of messages: _core.as_size) and comes back to _allocate. */
static PyObject* pmi_heap_malloc_or_zalloc(PyObject* self, PyObject* arg, bool zero) {
    const Py_ssize_t size = pmi_plain_size(arg);
    if (size >= 0) return pmi_heap_allocate_sized(self, (size_t)size, 0, zero);
    PyObject* args[2] = {arg, zero ? Py_True : Py_False};
    return pmi_slow_call(PMI_SLOW_ALLOCATE, self, args, 2, NULL);
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
    if (alignment & (alignment - 1)) {  /* mimalloc reports an error for these: refuse them first */
        PyErr_Format(PyExc_ValueError, "alignment must be a power of two, got %zu", alignment);
        return NULL;
    }
    if (size > (size_t)PTRDIFF_MAX || alignment > (size_t)PTRDIFF_MAX) {
        PyErr_Format(PyExc_MemoryError, "cannot allocate %zu bytes aligned to %zu", size, alignment);
        return NULL;
    }
    const int zero = PyObject_IsTrue(args[2]);
    if (zero < 0) return NULL;
    return pmi_heap_allocate_sized(self, size, alignment, zero != 0);
}

static PyObject* pmi_heap_realloc(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "realloc(block, size)"); return NULL; }
    PyObject* block = args[0];
    if (!PyObject_TypeCheck(block, &pmi_BlockType)) {
        PyErr_Format(PyExc_TypeError, "realloc needs a Block, not %s", Py_TYPE(block)->tp_name);
        return NULL;
    }
    const Py_ssize_t size = pmi_plain_size(args[1]);
    if (size < 0) return pmi_slow_call(PMI_SLOW_REALLOC, self, args, 2, NULL);
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
        if (pmi_slow_raise(PMI_SLOW_RAISE_IF_UNUSABLE, self, NULL) < 0) return NULL;  /* it opened again: go on */
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

/* The Heap objects that stand for pymimalloc's heaps, by heap id (pmi_heap_id: what heap_of's lookup of an address
   gives): {id: the object's address}, a borrowed reference, so that the registry keeps no Heap alive. An entry goes
   when the heap is closed (_heap_forget) and when its object is freed (dealloc), never before: a Heap subclass whose
   __del__ kept the heap (resurrected it) is still found, where a weak registry lost it, since the collector clears
   weak references before it runs finalizers (a review found heap_of() saying None for such an open heap).
   Read and written with the GIL held. */
static PyObject* pmi_heap_objects;

static PyObject* pmi_heap_key(pmi_HeapBaseObject* base) {
    return PyLong_FromSize_t((size_t)pmi_heap_id(base->handle));
}

static int pmi_heap_remember(pmi_HeapBaseObject* base) {
    PyObject* key = pmi_heap_key(base);
    PyObject* value = key == NULL ? NULL : PyLong_FromVoidPtr(base);
    const int status = value == NULL ? -1 : PyDict_SetItem(pmi_heap_objects, key, value);
    Py_XDECREF(key);
    Py_XDECREF(value);
    return status;
}

/* Take the entry of `base` out, if it is the one registered under its heap's id; keeps any exception set before */
static void pmi_heap_forget_object(pmi_HeapBaseObject* base) {
    if (base->handle == NULL || pmi_heap_objects == NULL) return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject* key = pmi_heap_key(base);
    PyObject* found = key == NULL ? NULL : PyDict_GetItemWithError(pmi_heap_objects, key);
    if (found != NULL && PyLong_AsVoidPtr(found) == (void*)base) (void)PyDict_DelItem(pmi_heap_objects, key);
    Py_XDECREF(key);
    PyErr_Clear();  /* out of memory making the key: the entry stays, and names an id no open heap will have */
    PyErr_Restore(type, value, traceback);
}

/* _heap_object(heap_id): the Heap standing for that open heap, or None */
static PyObject* pmi_heap_object(PyObject* self, PyObject* key) {
    (void)self;
    PyObject* found = PyDict_GetItemWithError(pmi_heap_objects, key);
    if (found == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    PyObject* heap = (PyObject*)PyLong_AsVoidPtr(found);
    /* A Heap being freed keeps its entry until its base dealloc, after its slots and __dict__ were cleared, which may
       run code (an Arena subclass's __del__) that asks: it is not handed out again, as a weak reference would not be */
    if (Py_REFCNT(heap) <= 0) Py_RETURN_NONE;
    Py_INCREF(heap);
    return heap;
}

/* _heap_forget(heap): the heap was closed; heap_of() no longer names it */
static PyObject* pmi_heap_forget(PyObject* self, PyObject* heap) {
    (void)self;
    if (!PyObject_TypeCheck(heap, &pmi_HeapBaseType)) {
        PyErr_SetString(PyExc_TypeError, "expected a Heap");
        return NULL;
    }
    pmi_heap_forget_object((pmi_HeapBaseObject*)heap);
    Py_RETURN_NONE;
}

/* _open(arena_id): make the Heap's mimalloc heap, in the arena with that id (an int; 0: none), once. */
static PyObject* pmi_heap_open(PyObject* self, PyObject* arg) {
    pmi_HeapBaseObject* base = (pmi_HeapBaseObject*)self;
    void* arena_id = PyLong_AsVoidPtr(arg);
    if (arena_id == NULL && PyErr_Occurred()) return NULL;
    if (base->handle != NULL) {
        PyErr_SetString(PyExc_TypeError, "Heap.__init__ cannot be called again on a Heap: it already owns its mimalloc heap");
        return NULL;
    }
    if (arena_id != NULL && !pmi_arena_known(arena_id)) {
        PyErr_SetString(PyExc_ValueError, "not an arena pymimalloc reserved");
        return NULL;
    }
    pmi_heap_t* h = arena_id == NULL ? pmi_heap_new() : pmi_heap_new_in_arena(arena_id);
    if (h == NULL) {
        PyErr_SetString(PyExc_MemoryError, "mimalloc could not make a new heap: out of memory, or too many heaps "
                                           "open at once (close the heaps you no longer use)");
        return NULL;
    }
    base->handle = h;
    if (pmi_heap_remember(base) < 0) return NULL;  /* the Heap owns its heap all the same: dealloc releases it */
    Py_RETURN_NONE;
}

/* _open_main(): make this Heap stand for mimalloc's main heap */
static PyObject* pmi_heap_open_main(PyObject* self, PyObject* unused) {
    (void)unused;
    pmi_HeapBaseObject* base = (pmi_HeapBaseObject*)self;
    if (base->handle != NULL) {
        PyErr_SetString(PyExc_TypeError, "this Heap already owns its mimalloc heap");
        return NULL;
    }
    base->handle = pmi_heap_main_handle();
    Py_RETURN_NONE;
}

/* _numpy_handler(): the heap's numpy handler capsule, made on first use (numpy's C API must be imported) */
static PyObject* pmi_heap_numpy_handler(PyObject* self, PyObject* unused) {
    (void)unused;
    pmi_HeapBaseObject* base = (pmi_HeapBaseObject*)self;
    pmi_heap_t* h = pmi_handle_of(self);
    if (h == NULL) return NULL;
    if (base->numpy_handler == NULL) {
        base->numpy_handler = pmi_numpy_handler_new(h);
        if (base->numpy_handler == NULL) return NULL;
    }
    Py_INCREF(base->numpy_handler);
    return base->numpy_handler;
}

/* heap.empty(shape, dtype=float, order="C") and heap.zeros: the array is built in C (pmi_numpy_new) once the
   heap has its numpy handler; before that, and for what numpy must make itself, the empty or zeros slow
   path (Python) runs instead, with the same arguments. */
static PyObject* pmi_heap_numpy_new(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames,
                                    bool zero) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* handler = ((pmi_HeapBaseObject*)self)->numpy_handler;  /* NULL until the first slow call */
    PyObject* dtype = nargs > 1 ? args[1] : NULL;
    PyObject* order = nargs > 2 ? args[2] : NULL;
    bool fast = pmi_numpy_ready && handler != NULL && nargs >= 1 && nargs <= 3;
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
            /* closed or frozen heaps say so (the raise_if_unusable slow path); otherwise it was memory */
#if PY_VERSION_HEX >= 0x030C0000
            PyObject* memory_error = PyErr_GetRaisedException();
            if (pmi_slow_raise(PMI_SLOW_RAISE_IF_UNUSABLE, self, NULL) < 0) { Py_DECREF(memory_error); return NULL; }
            PyErr_SetRaisedException(memory_error);
#else
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            if (pmi_slow_raise(PMI_SLOW_RAISE_IF_UNUSABLE, self, NULL) < 0) {
                Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(traceback); return NULL;
            }
            PyErr_Restore(type, value, traceback);
#endif
            return NULL;
        }
        Py_DECREF(array);  /* NotImplemented: numpy makes it, through the handler */
    }
    return pmi_slow_call(zero ? PMI_SLOW_ZEROS : PMI_SLOW_EMPTY, self, args, nargsf, kwnames);
}

static PyObject* pmi_heap_empty(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    return pmi_heap_numpy_new(self, args, nargsf, kwnames, false);
}

static PyObject* pmi_heap_zeros(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    return pmi_heap_numpy_new(self, args, nargsf, kwnames, true);
}

static void pmi_heap_base_dealloc(PyObject* self) {
    pmi_HeapBaseObject* base = (pmi_HeapBaseObject*)self;
    pmi_heap_forget_object(base);
    Py_CLEAR(base->numpy_handler);
    if (base->handle != NULL) {
        pmi_heap_t* h = base->handle;
        base->handle = NULL;
        pmi_heap_release(h);  /* closes the heap if it is still open, and drops the reference */
    }
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef pmi_heap_methods[] = {
    {"empty", (PyCFunction)(void (*)(void))pmi_heap_empty, METH_FASTCALL | METH_KEYWORDS,
     "empty($self, shape, dtype=None, order='C')\n--\n\n"
     "numpy.empty with the data in this heap. ValueError if closed, RuntimeError if frozen.\n\n"
     "The array is the one numpy makes with the heap's handler set (it owns its data, and numpy frees it\n"
     "through the handler), built in C without setting numpy's handler ContextVar."},
    {"zeros", (PyCFunction)(void (*)(void))pmi_heap_zeros, METH_FASTCALL | METH_KEYWORDS,
     "zeros($self, shape, dtype=None, order='C')\n--\n\n"
     "numpy.zeros with the data in this heap, zeroed by mimalloc (its calloc), not by a memset."},
    {"malloc", pmi_heap_malloc, METH_O,
     "malloc($self, size, /)\n--\n\n"
     "Allocate a Block of size bytes (uninitialised contents).\n\n"
     "Raises TypeError if size is not an int, ValueError if it is negative or the heap is closed,\n"
     "RuntimeError while a visit or snapshot holds the heap frozen, MemoryError if it is too large or\n"
     "memory runs out."},
    {"zalloc", pmi_heap_zalloc, METH_O, "zalloc($self, size, /)\n--\n\nAllocate a zero-filled Block of size bytes. Raises as malloc."},
    {"_allocate", (PyCFunction)(void (*)(void))pmi_heap_allocate, METH_FASTCALL,
     "_allocate($self, size, alignment, zero, /)\n--\n\nAllocate a Block of a checked size and alignment."},
    {"realloc", (PyCFunction)(void (*)(void))pmi_heap_realloc, METH_FASTCALL,
     "realloc($self, block, size, /)\n--\n\n"
     "Resize block to size bytes, keeping its contents up to the smaller size.\n\n"
     "Returns a new Block; the old one is freed (using it raises ValueError). Raises ValueError if the\n"
     "block belongs to another heap or is freed, or this heap is closed; BufferError while buffers of the\n"
     "block are exported; MemoryError if memory runs out (the old block is then unchanged)."},
    {"_open", pmi_heap_open, METH_O, "_open($self, arena_id, /)\n--\n\nMake the mimalloc heap (once)."},
    {"_open_main", pmi_heap_open_main, METH_NOARGS, "_open_main($self, /)\n--\n\nStand for the main heap (once)."},
    {"_numpy_handler", pmi_heap_numpy_handler, METH_NOARGS,
     "_numpy_handler($self, /)\n--\n\nThe heap's numpy handler capsule, made on first use."},
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
};


/* -- HeapScope: the with-blocks that hold a heap ------------------------------------------------------
   as_default(), python_objects(), numpy_allocator() and the freeze of snapshot() and visit() are one type
   (pmi_internal.h has its layout). Each acquires in __enter__ and releases in __exit__ as one C call, so no
   exception (a KeyboardInterrupt from a signal handler, anything a tracer raises) can land between taking
   the heap and recording that it was taken. Releasing happens exactly once: in __exit__, whoever calls it,
   or in dealloc for a scope entered by hand and dropped.
   The default heap and the python_objects heap of a context are ContextVars, as numpy's handler and
   decimal's context are: an asyncio task sees its own, and a thread starts with none. Each holds the tuple
   of scopes entered in that context, innermost last; readers take the innermost one still held. Leaving a
   block takes its own scope out of the tuple wherever it is, so blocks left out of order (two generators,
   two tasks sharing a context) never restore a stale heap, and a block left from another context (a
   generator finalised elsewhere) stops counting at once: its scope is no longer held. */

static PyObject* pmi_default_var;  /* the tuple of as_default() scopes of a context */
PyObject* pmi_objects_var;          /* the tuple of python_objects() scopes of a context */

static void pmi_entry_dealloc(PyObject* self) { Py_TYPE(self)->tp_free(self); }

PyTypeObject pmi_EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymimalloc._mimalloc.HeapScopeEntry",
    .tp_basicsize = sizeof(pmi_ScopeEntry),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "What a context lists for one of its HeapScope blocks (internal).",
    .tp_dealloc = pmi_entry_dealloc,
};

static const char* const pmi_scope_names[] = {"as_default", "python_objects", "numpy_allocator", "snapshot"};

static PyObject* pmi_scope_var(int kind) {
    return kind == PMI_SCOPE_DEFAULT ? pmi_default_var : kind == PMI_SCOPE_OBJECTS ? pmi_objects_var : NULL;
}

/* HeapScope(heap, kind) */
static PyObject* pmi_scope_tp_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    PyObject* heap;
    int kind;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "HeapScope(heap, kind) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!i:HeapScope", &pmi_HeapBaseType, &heap, &kind)) return NULL;
    if (kind < PMI_SCOPE_DEFAULT || kind > PMI_SCOPE_FREEZE) {
        PyErr_Format(PyExc_ValueError, "no HeapScope kind %d", kind);
        return NULL;
    }
    pmi_heap_t* h = pmi_handle_of(heap);
    if (h == NULL) return NULL;
    pmi_ScopeObject* scope = (pmi_ScopeObject*)type->tp_alloc(type, 0);
    if (scope == NULL) return NULL;
    Py_INCREF(heap);
    scope->heap = heap;
    pmi_heap_ref(h);
    scope->handle = h;
    scope->kind = kind;
    scope->stage = PMI_STAGE_NEW;
    scope->entry = PyObject_New(pmi_ScopeEntry, &pmi_EntryType);
    if (scope->entry == NULL) { Py_DECREF(scope); return NULL; }
    scope->entry->scope = scope;
    return (PyObject*)scope;
}

/* An entry of a block that no longer holds its heap, whatever its kind */
static bool pmi_entry_dead(PyObject* item) {
    if (!Py_IS_TYPE(item, &pmi_EntryType)) return false;
    const pmi_ScopeObject* scope = ((pmi_ScopeEntry*)item)->scope;
    return scope == NULL || scope->stage != PMI_STAGE_HELD;
}

/* `stack` + (scope,), or `stack` without scope (a new reference; `stack` may be NULL: empty) */
/* `stack` and `scope` on top, without the entries of scopes that no longer hold their heap (dropped while held,
   or left from another context): they would otherwise stay in this context's tuple for good, and every push
   would copy them again (a review found 10,000 dropped blocks making as_default() 50 times slower). Items that
   are not entries (the numpy stack's first: the handler from before) stay.
   Whether an entry is held is read once, in a loop that allocates nothing: an allocation may run the garbage
   collector, whose finalizers may let scopes go (a generator suspended in its block, a dropped cycle). The
   tuple is made first at full size and shrunk after (before, a count taken ahead of the allocation and a copy
   after it disagreed, and left a NULL item: a review's reproducer crashed). */
static PyObject* pmi_stack_with(PyObject* stack, PyObject* scope) {
    const Py_ssize_t n = stack == NULL ? 0 : PyTuple_GET_SIZE(stack);
    PyObject* grown = PyTuple_New(n + 1);
    if (grown == NULL) return NULL;
    Py_ssize_t live = 0;
    for (Py_ssize_t i = 0; i < n; i++) {  /* nothing here allocates or runs Python code */
        PyObject* item = PyTuple_GET_ITEM(stack, i);
        if (pmi_entry_dead(item)) continue;
        Py_INCREF(item);
        PyTuple_SET_ITEM(grown, live++, item);
    }
    Py_INCREF(scope);
    PyTuple_SET_ITEM(grown, live, scope);
    if (live < n && _PyTuple_Resize(&grown, live + 1) < 0) return NULL;  /* shrinks in place; frees on failure */
    return grown;
}

/* `stack` without any copy of `scope` (a new reference). A value set from Python may hold the entry more than once
   (`var.set(var.get() * 2)`): the tuple is made at full size and shrunk to what was kept, where one item fewer left
   the last slot NULL and the next reader crashed (tests/children/private_state_fuzz.py found it). */
static PyObject* pmi_stack_without(PyObject* stack, PyObject* scope) {
    const Py_ssize_t n = PyTuple_GET_SIZE(stack);
    PyObject* shrunk = PyTuple_New(n);
    if (shrunk == NULL) return NULL;
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < n; i++) {  /* nothing here allocates or runs Python code */
        PyObject* item = PyTuple_GET_ITEM(stack, i);
        if (item == scope) continue;
        Py_INCREF(item);
        PyTuple_SET_ITEM(shrunk, kept++, item);
    }
    if (kept < n && _PyTuple_Resize(&shrunk, kept) < 0) return NULL;  /* shrinks in place; frees on failure */
    return shrunk;
}

/* The tuple in `var` for this context (a new reference), or NULL with no error when there is none */
static PyObject* pmi_stack_get(PyObject* var, int* failed) {
    PyObject* stack = NULL;
    *failed = PyContextVar_Get(var, NULL, &stack) < 0;
    if (stack != NULL && !PyTuple_Check(stack)) Py_CLEAR(stack);
    return stack;
}

static int pmi_stack_push(PyObject* var, PyObject* scope) {
    int failed;
    PyObject* stack = pmi_stack_get(var, &failed);
    if (failed) return -1;
    PyObject* grown = pmi_stack_with(stack, scope);
    Py_XDECREF(stack);
    if (grown == NULL) return -1;
    PyObject* token = PyContextVar_Set(var, grown);
    Py_DECREF(grown);
    if (token == NULL) return -1;
    Py_DECREF(token);
    return 0;
}

/* Take `scope` out of this context's tuple, if it is there (it is not when left from another context) */
static int pmi_stack_remove(PyObject* var, PyObject* scope) {
    int failed;
    PyObject* stack = pmi_stack_get(var, &failed);
    if (failed) return -1;
    if (stack == NULL) return 0;
    int found = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(stack) && !found; i++) found = PyTuple_GET_ITEM(stack, i) == scope;
    int status = 0;
    if (found) {
        PyObject* shrunk = pmi_stack_without(stack, scope);
        PyObject* token = shrunk == NULL ? NULL : PyContextVar_Set(var, shrunk);
        Py_XDECREF(shrunk);
        if (token == NULL) status = -1;
        Py_XDECREF(token);
    }
    Py_DECREF(stack);
    return status;
}

/* The innermost scope of `kind` still held in this context's tuple of `var`, borrowed, or NULL */
static pmi_ScopeObject* pmi_stack_innermost(PyObject* var, int kind) {
    int failed;
    PyObject* stack = pmi_stack_get(var, &failed);
    if (stack == NULL) return NULL;
    pmi_ScopeObject* held = NULL;
    for (Py_ssize_t i = PyTuple_GET_SIZE(stack) - 1; i >= 0 && held == NULL; i--) {
        held = pmi_entry_held(PyTuple_GET_ITEM(stack, i), kind);
    }
    Py_DECREF(stack);  /* the context still holds the tuple, and the tuple the scope */
    return held;
}

/* What every release does, from __exit__ or dealloc: the heap is no longer held by this scope. */
static void pmi_scope_let_go(pmi_ScopeObject* scope) {
    scope->stage = PMI_STAGE_DONE;
    switch (scope->kind) {
        case PMI_SCOPE_FREEZE: pmi_heap_thaw(scope->handle); return;
        case PMI_SCOPE_OBJECTS: pmi_objects_end(); break;
        default: break;
    }
    pmi_heap_unpin(scope->handle);
}

/* numpy_allocator() blocks of a context: (the handler before the outermost block, entry, entry, ...) */
static PyObject* pmi_numpy_var;

static int pmi_numpy_push(pmi_ScopeObject* scope, PyObject* handler) {
    int failed;
    PyObject* stack = pmi_stack_get(pmi_numpy_var, &failed);
    if (failed) return -1;
    if (stack == NULL || PyTuple_GET_SIZE(stack) == 0 || !PyCapsule_IsValid(PyTuple_GET_ITEM(stack, 0), "mem_handler")) {
        Py_XDECREF(stack);  /* none yet, or not a list pymimalloc made (pmi_entry_held says how): start one */
        PyObject* base = pmi_numpy_get_handler();
        if (base == NULL) return -1;
        stack = PyTuple_Pack(1, base);
        Py_DECREF(base);
        if (stack == NULL) return -1;
    }
    PyObject* grown = pmi_stack_with(stack, (PyObject*)scope->entry);
    Py_DECREF(stack);
    if (grown == NULL) return -1;
    PyObject* token = PyContextVar_Set(pmi_numpy_var, grown);
    Py_DECREF(grown);
    if (token == NULL) return -1;
    Py_DECREF(token);
    PyObject* previous = pmi_numpy_set_handler(handler);
    Py_XDECREF(previous);
    return previous == NULL ? -1 : 0;
}

/* Take the block's entry out of this context's list, and give numpy the handler of the innermost block still
   held (or, with none, the one before the outermost), unless numpy's handler is no longer pymimalloc's:
   then someone else set theirs since and it stays. A block left from another context is not in this
   context's list: its own context keeps numpy's handler until one of its blocks is left there. */
/* The handler the innermost block of `stack` still held wants (borrowed), or the one from before them all; NULL
   where `stack` is not a list pymimalloc made (then numpy's handler is left as it is) */
static PyObject* pmi_numpy_innermost(PyObject* stack) {
    for (Py_ssize_t i = PyTuple_GET_SIZE(stack) - 1; i >= 1; i--) {
        pmi_ScopeObject* held = pmi_entry_held(PyTuple_GET_ITEM(stack, i), PMI_SCOPE_NUMPY);
        PyObject* handler = held != NULL ? ((pmi_HeapBaseObject*)held->heap)->numpy_handler : NULL;
        if (handler != NULL) return handler;
    }
    PyObject* before = PyTuple_GET_SIZE(stack) > 0 ? PyTuple_GET_ITEM(stack, 0) : NULL;
    return before != NULL && PyCapsule_IsValid(before, "mem_handler") ? before : NULL;
}

static int pmi_numpy_remove(pmi_ScopeEntry* entry) {
    int failed;
    PyObject* stack = pmi_stack_get(pmi_numpy_var, &failed);
    if (stack == NULL) return failed ? -1 : 0;
    int found = 0;
    for (Py_ssize_t i = 1; i < PyTuple_GET_SIZE(stack) && !found; i++) found = PyTuple_GET_ITEM(stack, i) == (PyObject*)entry;
    if (!found) { Py_DECREF(stack); return 0; }
    PyObject* shrunk = pmi_stack_without(stack, (PyObject*)entry);
    Py_DECREF(stack);
    if (shrunk == NULL) return -1;
    /* Setting numpy's handler allocates, so the garbage collector may run and let the chosen block go (its heap's
       capsule with it): the choice is held by a reference and made again after the set, until it stands (a
       review's reproducer installed a freed capsule, or overwrote what a nested removal had set) */
    int status = 0;
    for (int attempt = 0; attempt < 8 && status == 0; attempt++) {
        PyObject* wanted = pmi_numpy_innermost(shrunk);
        if (wanted == NULL) break;
        Py_INCREF(wanted);
        PyObject* current = pmi_numpy_get_handler();
        int settled = 1;
        if (current == NULL) status = -1;
        else if (pmi_numpy_is_ours(current) && current != wanted) {
            PyObject* previous = pmi_numpy_set_handler(wanted);
            if (previous == NULL) status = -1;
            Py_XDECREF(previous);
            settled = pmi_numpy_innermost(shrunk) == wanted;
        }
        Py_XDECREF(current);
        Py_DECREF(wanted);
        if (settled) break;
    }
    PyObject* empty = PyTuple_New(0);
    PyObject* token = PyContextVar_Set(pmi_numpy_var, PyTuple_GET_SIZE(shrunk) > 1 || empty == NULL ? shrunk : empty);
    Py_XDECREF(empty);
    Py_DECREF(shrunk);
    if (token == NULL) status = -1;
    Py_XDECREF(token);
    return status;
}

/* A Python subclass's hook (pymimalloc.Snapshot, pymimalloc.Measurement), called by the C __enter__ once the
   heap is held and by the C __exit__ once it is let go: whatever it returns (a new reference), None where the
   class does not define it (HeapScope itself), or NULL with its exception. The with-statement then calls only
   these C methods, so no Python frame runs between a with-block's end and the heap's release: a Python
   __exit__ could be interrupted at its first instruction, before it let go. */
static PyTypeObject pmi_ScopeType;

static PyObject* pmi_scope_hook(PyObject* self, const char* name) {
    if (Py_TYPE(self) == &pmi_ScopeType) Py_RETURN_NONE;
    PyObject* hook = PyObject_GetAttrString(self, name);
    if (hook == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject* result = PyObject_CallNoArgs(hook);
    Py_DECREF(hook);
    return result;
}

static int pmi_scope_leave(pmi_ScopeObject* scope);

/* The heap's counters as measure() reports them, a new tuple: (live bytes, peak bytes or None where threads left no
   exact peak, live blocks, allocations) */
static PyObject* pmi_heap_counters(pmi_heap_t* h) {
    PyObject* peak = pmi_heap_peak_exact(h) ? PyLong_FromSize_t(pmi_heap_peak_bytes(h)) : Py_NewRef(Py_None);
    if (peak == NULL) return NULL;
    return Py_BuildValue("(nNnn)", (Py_ssize_t)pmi_heap_live_bytes(h), peak, (Py_ssize_t)pmi_heap_live_blocks(h),
                         (Py_ssize_t)pmi_heap_total_blocks(h));
}

/* __enter__'s C part, the collector paused (nothing here runs Python code or lets the GIL go, so no other thread
   sees the pause): the heap held and the block listed in its context. PMI_OK; a status to raise once the collector
   runs again (nothing held); or 1 with a C exception set (out of memory: nothing held). `handler`: a
   numpy_allocator() block's capsule, made before. */
static int pmi_scope_hold(pmi_ScopeObject* scope, PyObject* handler, const char** what) {
    pmi_heap_t* h = scope->handle;
    int status;
    switch (scope->kind) {
        case PMI_SCOPE_FREEZE: status = pmi_heap_freeze(h); break;
        case PMI_SCOPE_OBJECTS: status = pmi_heap_pin_even_frozen(h); break;  /* frozen: objects go elsewhere */
        default: status = pmi_heap_pin(h); break;
    }
    if (status != PMI_OK) {
        if (scope->kind == PMI_SCOPE_FREEZE) *what = "walking the heap";
        return status;
    }
    if (scope->kind == PMI_SCOPE_OBJECTS) {
        status = pmi_objects_begin(h);
        if (status != PMI_OK) { pmi_heap_unpin(h); return status; }
    }
    PyObject* var = pmi_scope_var(scope->kind);
    int failed = 0;
    if (var != NULL) failed = pmi_stack_push(var, (PyObject*)scope->entry) < 0;
    else if (handler != NULL) failed = pmi_numpy_push(scope, handler) < 0;
    if (failed) {
        pmi_scope_let_go(scope);
        return 1;
    }
    scope->stage = PMI_STAGE_HELD;
    if (scope->kind == PMI_SCOPE_OBJECTS) pmi_objects_changed();
    return PMI_OK;
}

static PyObject* pmi_scope_enter(PyObject* self, PyObject* unused) {
    (void)unused;
    pmi_ScopeObject* scope = (pmi_ScopeObject*)self;
    const char* name = pmi_scope_names[scope->kind];
    if (scope->stage != PMI_STAGE_NEW) {
        if (Py_TYPE(self) != &pmi_ScopeType)
            PyErr_Format(PyExc_RuntimeError, "a %s block can be entered once; make a new one", _PyType_Name(Py_TYPE(self)));
        else PyErr_Format(PyExc_RuntimeError, "a %s() block can be entered once; call heap.%s() again", name, name);
        return NULL;
    }
    /* Entering from here on, so a second __enter__ is refused whatever runs below */
    scope->stage = PMI_STAGE_ENTERING;
    PyObject* handler = NULL;
    if (scope->kind == PMI_SCOPE_NUMPY) {  /* made before the pin (and the pause: it may raise through Python) */
        handler = pmi_heap_numpy_handler(scope->heap, NULL);
        if (handler == NULL) { scope->stage = PMI_STAGE_NEW; return NULL; }
    }
    const char* what = name;
    const int gc_was_enabled = pmi_gc_pause();
    const int status = pmi_scope_hold(scope, handler, &what);
    pmi_gc_resume(gc_was_enabled);
    Py_XDECREF(handler);
    if (status != PMI_OK) {
        if (scope->stage == PMI_STAGE_ENTERING) scope->stage = PMI_STAGE_NEW;  /* nothing held: may be entered again */
        return status == 1 ? NULL : pmi_raise_status(status, what);
    }
    /* A subclass's Python work (a snapshot's walk) runs here, inside this call: if it raises (an interrupt
       included), the heap is let go before the exception leaves, and __exit__ stays C alone (pmi_scope_hook) */
    PyObject* result = pmi_scope_hook(self, "_entered");
    if (result == NULL) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        /* no _left: it never entered, as far as it knows; and nothing if the hook left already (by __exit__) */
        if (scope->stage == PMI_STAGE_HELD && pmi_scope_leave(scope) < 0) PyErr_Clear();
        PyErr_Restore(type, value, traceback);
        return NULL;
    }
    if (result != Py_None) return result;
    Py_DECREF(result);
    Py_INCREF(scope->heap);
    return scope->heap;
}

/* Let the held heap go and take this scope's entry out of its context: 0, or -1 with an exception (the heap is
   let go either way) */
static int pmi_scope_release(pmi_ScopeObject* scope);
static int pmi_scope_leave(pmi_ScopeObject* scope) {
    const int gc_was_enabled = pmi_gc_pause();  /* no finalizer inside (pmi_gc_pause) */
    const int status = pmi_scope_release(scope);
    pmi_gc_resume(gc_was_enabled);
    return status;
}

static int pmi_scope_release(pmi_ScopeObject* scope) {
    pmi_scope_let_go(scope);  /* first: whatever fails below, the heap is let go */
    if (scope->kind == PMI_SCOPE_OBJECTS && scope->final == NULL) {  /* the block's end, as measure() reports it */
        scope->final = pmi_heap_counters(scope->handle);
        if (scope->final == NULL) PyErr_Clear();  /* out of memory: the figures are read live instead */
    }
    PyObject* var = pmi_scope_var(scope->kind);
    if (var != NULL) return pmi_stack_remove(var, (PyObject*)scope->entry) < 0 ? -1 : 0;
    if (scope->kind == PMI_SCOPE_NUMPY) return pmi_numpy_remove(scope->entry) < 0 ? -1 : 0;
    return 0;
}

static PyObject* pmi_scope_exit(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    (void)args; (void)nargs;
    pmi_ScopeObject* scope = (pmi_ScopeObject*)self;
    if (scope->stage != PMI_STAGE_HELD) Py_RETURN_NONE;  /* never entered, or left already */
    if (pmi_scope_leave(scope) < 0) return NULL;
    return pmi_scope_hook(self, "_left");  /* a subclass's Python work once the heap is let go (measure's figures) */
}

static void pmi_scope_dealloc(PyObject* self) {
    pmi_ScopeObject* scope = (pmi_ScopeObject*)self;
    /* held and dropped (entered by hand, or a with-statement unwound before its __exit__): let go; the
       contexts that list it see its entry cleared */
    if (scope->entry != NULL) scope->entry->scope = NULL;
    if (scope->stage == PMI_STAGE_HELD) {
        pmi_scope_let_go(scope);
        if (scope->kind == PMI_SCOPE_NUMPY && scope->entry != NULL) {
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);  /* dealloc may run while an exception propagates */
            const int gc_was_enabled = pmi_gc_pause();
            const int failed = pmi_numpy_remove(scope->entry) < 0;
            pmi_gc_resume(gc_was_enabled);  /* before the hook below, Python code */
            if (failed) PyErr_WriteUnraisable(self);
            PyErr_Restore(type, value, traceback);
        }
    }
    Py_CLEAR(scope->entry);
    Py_CLEAR(scope->final);
    pmi_heap_unref_public(scope->handle);
    Py_CLEAR(scope->heap);
    Py_TYPE(self)->tp_free(self);
}

static PyObject* pmi_scope_repr(PyObject* self) {
    pmi_ScopeObject* scope = (pmi_ScopeObject*)self;
    static const char* const stages[] = {"not entered", "held", "left"};
    return PyUnicode_FromFormat("<pymimalloc.HeapScope %s %s of %R>", pmi_scope_names[scope->kind],
                                stages[scope->stage], scope->heap);
}

static PyObject* pmi_scope_get_heap(PyObject* self, void* closure) {
    (void)closure;
    PyObject* heap = ((pmi_ScopeObject*)self)->heap;
    Py_INCREF(heap);
    return heap;
}

static PyObject* pmi_scope_get_held(PyObject* self, void* closure) {
    (void)closure;
    return PyBool_FromLong(((pmi_ScopeObject*)self)->stage == PMI_STAGE_HELD);
}

static PyObject* pmi_scope_get_entered(PyObject* self, void* closure) {
    (void)closure;
    return PyBool_FromLong(((pmi_ScopeObject*)self)->stage != PMI_STAGE_NEW);
}

static PyObject* pmi_scope_get_kind(PyObject* self, void* closure) {
    (void)closure;
    return PyUnicode_FromString(pmi_scope_names[((pmi_ScopeObject*)self)->kind]);
}

static PyObject* pmi_scope_get_final(PyObject* self, void* closure) {
    (void)closure;
    PyObject* final = ((pmi_ScopeObject*)self)->final;
    return Py_NewRef(final != NULL ? final : Py_None);
}

static PyObject* pmi_scope_get_counters(PyObject* self, void* closure) {
    (void)closure;
    return pmi_heap_counters(((pmi_ScopeObject*)self)->handle);
}

static PyGetSetDef pmi_scope_getset[] = {
    {"heap", pmi_scope_get_heap, NULL, "The Heap this block holds.", NULL},
    {"held", pmi_scope_get_held, NULL, "True between entering the block and leaving it.", NULL},
    {"entered", pmi_scope_get_entered, NULL, "True once the block was entered (it may have been left since).", NULL},
    {"kind", pmi_scope_get_kind, NULL, "'as_default', 'python_objects', 'numpy_allocator' or 'snapshot'.", NULL},
    {"final", pmi_scope_get_final, NULL, "A python_objects block's heap counters when it was left: (live bytes, "
     "peak bytes or None, live blocks, allocations); None before.", NULL},
    {"counters", pmi_scope_get_counters, NULL, "The heap's counters now, as final records them.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject* pmi_scope_reduce_ex(PyObject* self, PyObject* protocol) {
    (void)self; (void)protocol;
    PyErr_SetString(PyExc_TypeError, "a HeapScope cannot be copied or pickled: it holds a heap of this process");
    return NULL;
}

static PyMethodDef pmi_scope_methods[] = {
    {"__enter__", pmi_scope_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nHold the heap; returns it."},
    {"__exit__", (PyCFunction)(void (*)(void))pmi_scope_exit, METH_FASTCALL,
     "__exit__($self, exc_type=None, exc=None, tb=None, /)\n--\n\nLet the heap go (once; later calls do nothing)."},
    {"__reduce_ex__", pmi_scope_reduce_ex, METH_O, "__reduce_ex__($self, protocol, /)\n--\n\nRaises TypeError."},
    {"__copy__", (PyCFunction)pmi_scope_reduce_ex, METH_NOARGS, "__copy__($self, /)\n--\n\nRaises TypeError."},
    {"__deepcopy__", pmi_scope_reduce_ex, METH_O, "__deepcopy__($self, memo, /)\n--\n\nRaises TypeError."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject pmi_ScopeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymimalloc.HeapScope",
    .tp_basicsize = sizeof(pmi_ScopeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,  /* Snapshot and Measurement: hooks _entered, _left */
    .tp_doc = "A single-use with-block that holds a heap: as the default heap (Heap.as_default), as the heap of\n"
              "Python objects (Heap.python_objects), as numpy's allocator (Heap.numpy_allocator) or frozen\n"
              "(snapshots). The heap cannot be closed while a block holds it.",
    .tp_new = pmi_scope_tp_new,
    .tp_dealloc = pmi_scope_dealloc,
    .tp_repr = pmi_scope_repr,
    .tp_methods = pmi_scope_methods,
    .tp_getset = pmi_scope_getset,
};

/* -- OptionsScope: options.override()'s with-block ---------------------------------------------------- */

/* Sets mimalloc options on __enter__ and puts the previous values back on __exit__, each in one call: Python
   delivers an interrupt between calls, so none can leave some options set and others not, or skip the restore
   (a with-block written in Python could be interrupted at the start of its __exit__). Refused values are
   refused here too (pmi_option_refusal), whoever builds the scope. Single use; an entered scope dropped without
   __exit__ leaves as it is dropped.
   Blocks may be left in any order (two generators, two threads): each option keeps the stack of the entries
   that hold it, in the order they were entered. The top entry's leaving puts back the value from before it;
   an entry below it leaving hands its saved value to the entry above, which puts it back in turn. Every
   change runs with the GIL held. */
typedef struct pmi_option_entry_s {
    struct pmi_option_entry_s* below;  /* entered before this one for the same option, still held */
    struct pmi_option_entry_s* above;
    mi_option_t index;
    long value;     /* what entering sets */
    long previous;  /* what leaving puts back if this entry is the top */
} pmi_option_entry_t;

static pmi_option_entry_t* pmi_option_top[_mi_option_last];  /* each option's innermost held entry */

typedef struct {
    PyObject_HEAD
    PyObject* result;  /* what __enter__ returns (the Options mapping) */
    int state;         /* 0: new, 1: entered, 2: left */
    Py_ssize_t count;
    pmi_option_entry_t entry[_mi_option_last];
} pmi_OptionsScopeObject;

static void pmi_options_scope_leave(pmi_OptionsScopeObject* self) {
    for (Py_ssize_t i = self->count; i-- > 0;) {
        pmi_option_entry_t* const e = &self->entry[i];
        if (e->above == NULL) {  /* the top: put back what was there before it */
            pmi_option_top[e->index] = e->below;
            if (e->below != NULL) e->below->above = NULL;
            mi_option_set(e->index, e->previous);
        }
        else {  /* held above: the entry above puts back what this one would have */
            e->above->previous = e->previous;
            e->above->below = e->below;
            if (e->below != NULL) e->below->above = e->above;
        }
        e->above = e->below = NULL;
    }
    self->state = 2;
}

static PyObject* pmi_options_scope_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    PyObject *result, *indices, *values;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "OptionsScope() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!O!:OptionsScope", &result, &PyTuple_Type, &indices, &PyTuple_Type, &values))
        return NULL;
    const Py_ssize_t count = PyTuple_GET_SIZE(indices);
    if (count != PyTuple_GET_SIZE(values) || count > (Py_ssize_t)_mi_option_last) {
        PyErr_SetString(PyExc_ValueError, "OptionsScope(result, indices, values): as many values as indices, "
                                          "at most one per option");
        return NULL;
    }
    pmi_OptionsScopeObject* self = (pmi_OptionsScopeObject*)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        const long index = PyLong_AsLong(PyTuple_GET_ITEM(indices, i));
        const long value = PyLong_AsLong(PyTuple_GET_ITEM(values, i));
        if (PyErr_Occurred()) { Py_DECREF(self); return NULL; }
        if (index < 0 || index >= (long)_mi_option_last) {
            PyErr_Format(PyExc_ValueError, "no mimalloc option has the index %ld", index);
            Py_DECREF(self);
            return NULL;
        }
        const char* const refused = pmi_option_refusal((int)index, value);
        if (refused != NULL) {
            PyErr_Format(PyExc_ValueError, "pymimalloc refuses mimalloc option %ld = %ld: %s", index, value, refused);
            Py_DECREF(self);
            return NULL;
        }
        self->entry[i].index = (mi_option_t)index;
        self->entry[i].value = value;
    }
    self->count = count;
    Py_INCREF(result);
    self->result = result;
    return (PyObject*)self;
}

static PyObject* pmi_options_scope_enter(PyObject* op, PyObject* unused) {
    (void)unused;
    pmi_OptionsScopeObject* self = (pmi_OptionsScopeObject*)op;
    if (self->state != 0) {
        PyErr_SetString(PyExc_RuntimeError, "an options override is single-use: call options.override() again");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->count; i++) {
        pmi_option_entry_t* const e = &self->entry[i];
        e->previous = mi_option_get(e->index);
        e->below = pmi_option_top[e->index];
        e->above = NULL;
        if (e->below != NULL) e->below->above = e;
        pmi_option_top[e->index] = e;
        mi_option_set(e->index, e->value);
    }
    self->state = 1;
    Py_INCREF(self->result);
    return self->result;
}

static PyObject* pmi_options_scope_exit(PyObject* op, PyObject* const* args, Py_ssize_t nargs) {
    (void)args; (void)nargs;
    pmi_OptionsScopeObject* self = (pmi_OptionsScopeObject*)op;
    if (self->state == 1) pmi_options_scope_leave(self);
    Py_RETURN_FALSE;
}

static void pmi_options_scope_dealloc(PyObject* op) {
    pmi_OptionsScopeObject* self = (pmi_OptionsScopeObject*)op;
    if (self->state == 1) pmi_options_scope_leave(self);  /* its entries go with it */
    Py_XDECREF(self->result);
    Py_TYPE(op)->tp_free(op);
}

static PyObject* pmi_options_scope_repr(PyObject* op) {
    pmi_OptionsScopeObject* self = (pmi_OptionsScopeObject*)op;
    static const char* const states[] = {"new", "entered", "left"};
    return PyUnicode_FromFormat("<pymimalloc.OptionsScope of %zd option(s), %s>", self->count, states[self->state]);
}

static PyMethodDef pmi_options_scope_methods[] = {
    {"__enter__", pmi_options_scope_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nSet the options; returns the options."},
    {"__exit__", (PyCFunction)(void (*)(void))pmi_options_scope_exit, METH_FASTCALL,
     "__exit__($self, exc_type=None, exc=None, tb=None, /)\n--\n\nPut the previous values back."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject pmi_OptionsScopeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymimalloc.OptionsScope",
    .tp_basicsize = sizeof(pmi_OptionsScopeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A single-use with-block that sets mimalloc options and puts the previous values back\n"
              "(options.override()).",
    .tp_new = pmi_options_scope_new,
    .tp_dealloc = pmi_options_scope_dealloc,
    .tp_repr = pmi_options_scope_repr,
    .tp_methods = pmi_options_scope_methods,
};

/* -- module functions ------------------------------------------------------------------------------- */

/* _default_heap(): the heap of the innermost as_default() block held in this context, or None */
static PyObject* pmi_default_heap(PyObject* self, PyObject* unused) {
    (void)self; (void)unused;
    pmi_ScopeObject* scope = pmi_stack_innermost(pmi_default_var, PMI_SCOPE_DEFAULT);
    if (scope == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(scope->heap);
    return scope->heap;
}

/* _python_objects_heap(): the heap this context's new Python objects come from (None: Python's own) */
static PyObject* pmi_python_objects_heap(PyObject* self, PyObject* unused) {
    (void)self; (void)unused;
    pmi_ScopeObject* scope = pmi_stack_innermost(pmi_objects_var, PMI_SCOPE_OBJECTS);
    if (scope == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(scope->heap);
    return scope->heap;
}

/* _heap_pointer(heap): the address of the Heap's wrapper (pmi_heap_t*), for the cffi calls of pymimalloc's
   boundary module. Valid while `heap` is alive: the Heap owns it. */
static PyObject* pmi_heap_pointer(PyObject* self, PyObject* heap) {
    (void)self;
    if (!PyObject_TypeCheck(heap, &pmi_HeapBaseType)) {
        PyErr_Format(PyExc_TypeError, "expected a Heap, not %s", Py_TYPE(heap)->tp_name);
        return NULL;
    }
    pmi_heap_t* h = pmi_handle_of(heap);
    return h == NULL ? NULL : PyLong_FromVoidPtr(h);
}

/* _call_locked(lock, what, func, *args): func(*args) with `lock` (a threading.RLock) held, for pymimalloc's sections
   that must not run in two threads at once (install() and uninstall()). A call from inside such a section in the
   same thread (a finalizer the garbage collector ran there, a signal handler, a profile hook) raises RuntimeError
   naming `what`, where it waited for its own thread for good (tests/children/scopes_gc_fuzz.py). The sections held
   are listed with their threads (the GIL guards the list); a fork happens only while no other thread holds one (the
   locks are taken around os.fork, pymimalloc/_process.py). */
#define PMI_HELD_LOCKS 8
static struct { PyObject* lock; unsigned long thread; PyObject* what; } pmi_held_locks[PMI_HELD_LOCKS];

static PyObject* pmi_call_locked(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    (void)self;
    if (nargs < 3 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_call_locked(lock, what, func, *args)");
        return NULL;
    }
    const unsigned long me = PyThread_get_thread_ident();
    for (int i = 0; i < PMI_HELD_LOCKS; i++) {
        if (pmi_held_locks[i].lock == args[0] && pmi_held_locks[i].thread == me) {
            PyErr_Format(PyExc_RuntimeError, "%U was called while %U ran in this thread (from a finalizer, a signal "
                         "handler or a profile hook): call it from elsewhere", args[1], pmi_held_locks[i].what);
            return NULL;
        }
    }
    static PyObject *acquire_name, *release_name;
    if (acquire_name == NULL && (acquire_name = PyUnicode_InternFromString("acquire")) == NULL) return NULL;
    if (release_name == NULL && (release_name = PyUnicode_InternFromString("release")) == NULL) return NULL;
    PyObject* acquired = PyObject_CallMethodNoArgs(args[0], acquire_name);  /* may wait, letting other threads run */
    if (acquired == NULL) return NULL;
    Py_DECREF(acquired);
    int slot = 0;
    while (slot < PMI_HELD_LOCKS && pmi_held_locks[slot].lock != NULL) slot++;
    PyObject* result;
    if (slot == PMI_HELD_LOCKS) {  /* more than 8 threads inside at once: only with more locks than pymimalloc has */
        PyErr_SetString(PyExc_RuntimeError, "too many pymimalloc sections held at once");
        result = NULL;
    }
    else {
        pmi_held_locks[slot].lock = args[0];
        pmi_held_locks[slot].thread = me;
        pmi_held_locks[slot].what = args[1];  /* borrowed: the caller's argument, alive until the call returns */
        result = PyObject_Vectorcall(args[2], args + 3, (size_t)(nargs - 3), NULL);
        pmi_held_locks[slot].lock = NULL;
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject* released = PyObject_CallMethodNoArgs(args[0], release_name);  /* a method call: no bound method made */
    if (released == NULL) {  /* it was held by this thread: nothing gets here but a lock that is not a Lock */
        Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(traceback);
        Py_XDECREF(result);
        return NULL;
    }
    Py_DECREF(released);
    PyErr_Restore(type, value, traceback);
    return result;
}

/* The offset of slot `name` of `cls`, where its descriptor is a writable object slot of `cls` itself (what
   __slots__ makes), or -1 with TypeError. */
static Py_ssize_t pmi_slot_offset(PyTypeObject* cls, const char* name) {
    PyObject* descr = PyObject_GetAttrString((PyObject*)cls, name);  /* a slot's descriptor, read from the class */
    Py_ssize_t offset = -1;
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type) && PyDescr_TYPE(descr) == cls) {
        const PyMemberDef* member = ((PyMemberDescrObject*)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY) && member->offset >= (Py_ssize_t)sizeof(PyObject)
            && member->offset + (Py_ssize_t)sizeof(PyObject*) <= cls->tp_basicsize)
            offset = member->offset;
    }
    Py_XDECREF(descr);
    if (offset < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s has no object slot %s", cls->tp_name, name);
    }
    return offset;
}

static inline void pmi_slot_set(PyObject* obj, Py_ssize_t offset, PyObject* value) {
    *(PyObject**)((char*)obj + offset) = Py_NewRef(value);
}

/* _block_infos(cls, areas, addresses, area_indices): a walk's live blocks (visit.py) as instances of `cls`, a class
   with the object slots address, size and area (BlockInfo), in one list per area of `areas`: the block at
   addresses[k] in areas[area_indices[k]], its size that area's block_size. Each is made as object.__new__(cls) and
   the slots' own setters make it (cls->tp_alloc, then each slot at its offset). Built in Python, 100 000 of them
   took 25 ms (python_level.py: 4.0-4.3 M blocks/s, against a goal of 5 M). */
static PyObject* pmi_block_infos(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyType_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])
        || !PyList_Check(args[3]) || PyList_GET_SIZE(args[2]) != PyList_GET_SIZE(args[3])) {
        PyErr_SetString(PyExc_TypeError, "_block_infos(cls, areas, addresses, area_indices): lists of one length");
        return NULL;
    }
    PyTypeObject* const cls = (PyTypeObject*)args[0];
    PyObject *const addresses = args[2], *const indices = args[3];
    const Py_ssize_t at_address = pmi_slot_offset(cls, "address");
    const Py_ssize_t at_size = at_address < 0 ? -1 : pmi_slot_offset(cls, "size");
    const Py_ssize_t at_area = at_size < 0 ? -1 : pmi_slot_offset(cls, "area");
    if (at_area < 0) return NULL;
    /* A collection the allocations below set off may run finalizers, which may change the caller's lists (or, found
       through the collector, these): the areas are read from a copy, and every list's length again at each block */
    PyObject* info = NULL;  /* the one being made, below */
    PyObject* areas = PySequence_Tuple(args[1]);
    if (areas == NULL) return NULL;
    const Py_ssize_t area_count = PyTuple_GET_SIZE(areas);
    PyObject* found = PyList_New(area_count);
    PyObject* sizes = PyList_New(area_count);
    if (found == NULL || sizes == NULL) goto failed;
    for (Py_ssize_t i = 0; i < area_count; i++) {
        PyObject* list = PyList_New(0);
        if (list == NULL) goto failed;
        PyList_SET_ITEM(found, i, list);
        PyObject* size = PyObject_GetAttrString(PyTuple_GET_ITEM(areas, i), "block_size");
        if (size == NULL) goto failed;
        PyList_SET_ITEM(sizes, i, size);
    }
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(addresses); k++) {
        info = cls->tp_alloc(cls, 0);
        if (info == NULL) goto failed;
        if (k >= PyList_GET_SIZE(addresses) || k >= PyList_GET_SIZE(indices)) goto changed;
        const Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(indices, k));  /* an int, or TypeError: runs no Python */
        if (i < 0 || i >= area_count) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "area index out of range");
            goto failed;
        }
        if (i >= PyList_GET_SIZE(found) || i >= PyList_GET_SIZE(sizes)) goto changed;
        pmi_slot_set(info, at_address, PyList_GET_ITEM(addresses, k));
        pmi_slot_set(info, at_size, PyList_GET_ITEM(sizes, i));
        pmi_slot_set(info, at_area, PyTuple_GET_ITEM(areas, i));
        const int appended = PyList_Append(PyList_GET_ITEM(found, i), info);
        Py_CLEAR(info);
        if (appended < 0) goto failed;
    }
    Py_DECREF(areas);
    Py_DECREF(sizes);
    return found;
changed:
    PyErr_SetString(PyExc_RuntimeError, "_block_infos: the lists changed during the call");
failed:
    Py_XDECREF(info);
    Py_DECREF(areas);
    Py_XDECREF(found);
    Py_XDECREF(sizes);
    return NULL;
}

static PyMethodDef pmi_python_functions[] = {
    {"_block_infos", (PyCFunction)(void (*)(void))pmi_block_infos, METH_FASTCALL, NULL},
    {"_call_locked", (PyCFunction)(void (*)(void))pmi_call_locked, METH_FASTCALL, NULL},
    {"_default_heap", pmi_default_heap, METH_NOARGS, NULL},
    {"_python_objects_heap", pmi_python_objects_heap, METH_NOARGS, NULL},
    {"_heap_pointer", pmi_heap_pointer, METH_O, NULL},
    {"_heap_object", pmi_heap_object, METH_O, NULL},
    {"_heap_forget", pmi_heap_forget, METH_O, NULL},
    {"_set_status_raiser", pmi_set_status_raiser, METH_O, NULL},
    {"_set_slow_paths", (PyCFunction)(void (*)(void))pmi_set_slow_paths, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

int pmi_python_install(uintptr_t caller) {
    PyGILState_STATE gil = PyGILState_Ensure();  /* cffi released the GIL around this call */
    int added = -1;
    PyObject* module = pmi_module_get(caller);
    if (pmi_default_var == NULL) pmi_default_var = PyContextVar_New("pymimalloc_default_heap", NULL);
    if (pmi_objects_var == NULL) pmi_objects_var = PyContextVar_New("pymimalloc_python_objects", NULL);
    if (pmi_numpy_var == NULL) pmi_numpy_var = PyContextVar_New("pymimalloc_numpy_allocators", NULL);
    if (pmi_heap_objects == NULL) pmi_heap_objects = PyDict_New();
    if (module != NULL && pmi_default_var != NULL && pmi_objects_var != NULL && pmi_numpy_var != NULL
        && pmi_heap_objects != NULL
        && pmi_module_add_type(module, "Block", &pmi_BlockType) == 0
        && pmi_module_add_type(module, "HeapBase", &pmi_HeapBaseType) == 0
        && pmi_module_add_type(module, "HeapScope", &pmi_ScopeType) == 0
        && pmi_module_add_type(module, "OptionsScope", &pmi_OptionsScopeType) == 0
        && PyType_Ready(&pmi_EntryType) == 0
        && pmi_module_add_functions(module, pmi_python_functions) == 0
        && PyModule_AddIntConstant(module, "SCOPE_DEFAULT", PMI_SCOPE_DEFAULT) == 0
        && PyModule_AddIntConstant(module, "SCOPE_OBJECTS", PMI_SCOPE_OBJECTS) == 0
        && PyModule_AddIntConstant(module, "SCOPE_NUMPY", PMI_SCOPE_NUMPY) == 0
        && PyModule_AddIntConstant(module, "SCOPE_FREEZE", PMI_SCOPE_FREEZE) == 0) {
        added = 0;
    }
    const int status = pmi_module_status(module, added);
    Py_XDECREF(module);
    PyGILState_Release(gil);
    return status;
}
