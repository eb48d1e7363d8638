/* pymimalloc's own CPython types, written in C for speed: Block (a buffer) and HeapBase (the allocation
 * methods that the Python Heap class inherits). See pmi_python.c for how they reach Python.
 * pmi_python_install() adds them to the pymimalloc._mimalloc module as `Block` and `HeapBase`.
 * Returns 0, or -1 with the Python error printed.
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines. */
int pmi_python_install(void);
