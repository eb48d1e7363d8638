/* For C test programs built on csrc/pmi_mimalloc.c alone: the glue's brackets around munmap, mprotect,
 * thread exit, statistics and walks (csrc/pmi_heap.c) have nothing to exclude in a program without pymimalloc's heaps.
 * Include before "pmi_mimalloc.c". */
#include <stdbool.h>
void pmi_os_unmap_begin(void) {}
void pmi_os_unmap_end(void) {}
void pmi_thread_exit_begin(void) {}
void pmi_thread_exit_end(void) {}
void pmi_stats_stop(void) {}
void pmi_stats_resume(void) {}
void pmi_world_enter(void) {}
void pmi_world_leave(void) {}
bool pmi_world_held(void) { return false; }
