/* numpy's memory handler (NEP 49) backed by a pymimalloc heap.
 * pmi_numpy_install() imports numpy's C API and adds these functions to the pymimalloc._mimalloc module
 * (they take and return Python objects, which cffi cannot express; a heap's handler capsule is made by
 * HeapBase._numpy_handler(), pmi_python.c):
 *   _numpy_call_with(capsule, func, *args, **kwargs) -> func(*args, **kwargs) with the handler set
 * Returns 0, or -1 if numpy's C API cannot be imported (its Python error is then printed).
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines. */
int pmi_numpy_install(uintptr_t module);  /* as pmi_allocator_install */
