/* A multi-threaded stress kernel in the shape of mimalloc's test-stress, written for pymimalloc:
 * each round starts `threads` new threads; they allocate from a set of shared heaps, hand blocks to each
 * other through a shared transfer array, free blocks other threads allocated, and check every block's
 * contents (a pattern derived from its address) before freeing it. Heaps are replaced as rounds go on and
 * deleted (mi_heap_delete) a few rounds later, while blocks from them are still live.
 * Returns the number of corrupted blocks found (0 is a pass), or -1 if out of memory.
 * No include guards: cffi's cdef parser reads this file as it is. */
long pmi_stress_run(int threads, int rounds, int iterations, uint64_t seed);
