/* pymimalloc's own CPython types, written in C for speed: Block (a buffer) and HeapBase (the allocation
 * methods that the Python Heap class inherits). See pmi_python.c for how they reach Python.
 * pmi_python_install(module) adds them to the pymimalloc._mimalloc module as `Block` and `HeapBase`;
 * `module` is the address (id()) of the caller's pymimalloc._mimalloc.
 * Returns 0; PMI_PYTHON_EINTERPRETER if the caller runs in a sub-interpreter, with nothing done (every
 * installer: pmi_module_get in pmi_python.c); or -1 with the Python error printed.
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines. */
#define PMI_PYTHON_EINTERPRETER -2
int pmi_python_install(uintptr_t module);
