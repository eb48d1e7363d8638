/* mimalloc serving CPython's own allocator domains, at run time (pymimalloc.install(); pmi_allocator.c).
 * pmi_allocator_install() adds these functions to the pymimalloc._mimalloc module (they must run with the
 * GIL held, which cffi's calls do not):
 *   _allocator_hook(domains, route) -> status: put our hook in front of each domain in the mask not hooked
 *                               yet, and if `route`, send their new allocations to mimalloc
 *                               (PMI_OK, PMI_EDEBUGHOOKS or PMI_ENOMEM)
 *   _allocator_check(domains) -> status: PMI_EDEBUGHOOKS if _allocator_hook would refuse them, else PMI_OK
 *   _allocator_route(domains) -> None: route exactly these hooked domains' new allocations to mimalloc
 *   _allocator_state() -> (hooked, routed): the two masks
 * Python objects in a chosen heap are the python_objects() HeapScope's (pmi_python.c); the hook reads them.
 * A hook is never taken out again: memory it gave out may be freed at any later time, and only the hook
 * knows to hand it to mimalloc. Unrouting sends new allocations back to the previous allocator.
 * `module` is id() of the caller's pymimalloc._mimalloc. Returns 0, PMI_PYTHON_EINTERPRETER in a sub-interpreter
 * (pmi_python.h), or -1 with the Python error printed.
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines. */
#define PMI_DOMAIN_RAW 1   /* PyMem_RawMalloc and friends: called without the GIL */
#define PMI_DOMAIN_MEM 2   /* PyMem_Malloc */
#define PMI_DOMAIN_OBJ 4   /* PyObject_Malloc: Python objects */
int pmi_allocator_install(uintptr_t module);
/* How this thread's part of Python's heap keeps full pages (csrc/pmi_mimalloc.c, "full pages of Python's heap"):
 * how many it keeps in each page queue (0-32), or -1 if it does not abandon the others to the arena; -2 before this
 * thread allocated from Python's heap (or before install()). For tests. */
long pmi_python_heap_full_retain(void);
/* Whether the first page of this thread's queue for blocks of `size` bytes in Python's heap is an empty page kept
 * for the next allocations (csrc/pmi_mimalloc.c, "empty pages of Python's heap"): 1 if it is (retired, no block
 * used), 0 if that page has blocks in use or is not retired, -1 if the queue is empty, -2 before this thread
 * allocated from Python's heap (or before install()). For tests. */
long pmi_python_heap_first_page_kept(size_t size);
/* How many empty pages of this thread's queues of Python's heap are marked retired where mimalloc's retire collection
 * does not look (not the first of their queue, or outside the bins it walks): each stays until a forced collect or a
 * search of its queue happens on it. 0 if none, -2 before this thread allocated from Python's heap (or before
 * install()). For tests. */
long pmi_python_heap_retired_out_of_sight(void);
/* In this thread's part of Python's heap, with no page yet for blocks of `size` bytes: fill one page, free the last
 * `left_free` blocks, then allocate and free one block `rounds` times, and free the rest (csrc/pmi_mimalloc.c, "a
 * nearly full page alone in its queue"). Returns 10 * the pages in that queue after the rounds, plus 1 if the first
 * page was the same page record at every round (a page given back and taken again at the same address reads the
 * same): 21 where a fresh page came in front at the first round and stayed. -1 if the queue had a page, -2 before
 * this thread allocated from Python's heap (or before install()), -3 out of memory, -4 if the first page did not
 * fill. For tests. */
long pmi_python_heap_nearly_full_walk(size_t size, size_t left_free, size_t rounds);
/* The medium path of csrc/pmi_mimalloc.c (blocks of 1 to 512 KiB from the first page of their queue) against
 * mimalloc's own: two new heaps of this thread take the same random walk of `steps` steps from `seed`, one with the
 * medium path first, the other through mi_heap_malloc alone, and after every step their page queues must read the
 * same page by page (block size, blocks used, capacity, reserve, free and local free lists, retire mark, full flag)
 * and blocks must keep their fill (three bytes, checked when freed; zeros after a calloc). Neither abandons full pages
 * (their reclaim order depends on addresses). Returns 0, the step (from 1) where they first differ (what differed in
 * `report`, NUL-terminated, at most `report_size` bytes), or -1 out of memory or when mimalloc took a page from the OS
 * rather than an arena (said in `report`); `*medium_blocks` counts the blocks the medium path
 * gave out, `*full_moves` the full pages it moved out of their queue. Needs no install(). For tests: no other
 * pymimalloc call may run meanwhile. */
long pmi_medium_path_walk(uint64_t seed, size_t steps, size_t* medium_blocks, size_t* full_moves, char* report,
                          size_t report_size);
