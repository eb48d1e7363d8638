/* All of mimalloc as one translation unit, through upstream's own single-unit build (src/static.c).
 * build_ffi.py puts the verified mimalloc tree's src/ and include/ on the include path; setuptools only
 * accepts sources inside the project, so this file is the project-relative handle on that tree.
 *
 * The upstream tree is compiled unmodified. Three of the C library calls it makes are routed through
 * pymimalloc's glue first, by macros defined before static.c is read (the system headers are included
 * first, so their declarations stay as they are):
 *   - munmap and mprotect take the unmap lock for writing, so that an address lookup (heap_of,
 *     usable_size of any int), which holds it for reading, never reads page metadata that another
 *     thread is unmapping or protecting (pmi_heap.h);
 *   - the destructor that mimalloc registers with pthread_key_create (its thread-done, which abandons
 *     the exiting thread's pages) runs under the exit lock, so no walk sees pages change owner. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stddef.h>

void pmi_os_unmap_begin(void);
void pmi_os_unmap_end(void);
void pmi_thread_exit_begin(void);
void pmi_thread_exit_end(void);
void pmi_stats_stop(void);
void pmi_stats_resume(void);

static int pmi_munmap(void* addr, size_t size) {
    pmi_os_unmap_begin();
    const int result = munmap(addr, size);
    pmi_os_unmap_end();
    return result;
}

static int pmi_mprotect(void* addr, size_t size, int protection) {
    pmi_os_unmap_begin();
    const int result = mprotect(addr, size, protection);
    pmi_os_unmap_end();
    return result;
}

static void (*pmi_upstream_thread_done)(void*);

static void pmi_thread_done(void* value) {
    pmi_thread_exit_begin();
    pmi_upstream_thread_done(value);
    pmi_thread_exit_end();
}

static int pmi_pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) {
    if (destructor == NULL) return pthread_key_create(key, NULL);
    pmi_upstream_thread_done = destructor;  /* v3.4.3 registers exactly one: mi_pthread_done */
    return pthread_key_create(key, &pmi_thread_done);
}

#define munmap(addr, size) pmi_munmap((addr), (size))
#define mprotect(addr, size, protection) pmi_mprotect((addr), (size), (protection))
#define pthread_key_create(key, destructor) pmi_pthread_key_create((key), (destructor))

/* v3.4.3 grows each thread's array of heap thread-locals (threadlocal.c, mi_thread_locals_expand) with
 * mi_rezalloc and trusts the new slots to be zero. They are not: mi_rezalloc zeroes from the old block's
 * USABLE size, and the bytes between the size first asked for and that usable size (a 16-slot array asks
 * 280 bytes and gets a 320-byte block) were never written, so they carry a dead thread's slots. A stale
 * {version, theap} pair whose key is still live makes _mi_thread_local_get hand out a freed theap of
 * another thread: blocks land in the wrong heap, refcounts and page queues of freed memory are written
 * (the "theap race" benchmarks/tsan.py reported with transient threads). For that one caller, zero the
 * whole usable tail of the array, so every later growth copies zeros.
 * This is upstream's src/static.c, whose list of sources is repeated here for that one macro. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "mimalloc.h"
#include "mimalloc/internal.h"
/* free.c's one call of _mi_page_retire, routed through Python's heap's retire policy (below, pmi_page_retire), and
 * alloc.c's calls of its slow path, _mi_malloc_generic, through pmi_malloc_generic (below, "retire marks") */
void pmi_page_retire(mi_page_t* page);
void* pmi_malloc_generic(mi_theap_t* theap, size_t size, size_t zero_huge_alignment, size_t* usable) mi_attr_noexcept;
/* and free.c's one call of _mi_arenas_page_free, for an emptied abandoned page, through pmi_abandoned_page_free (below,
 * "an emptied huge page kept for the next") */
void pmi_abandoned_page_free(mi_page_t* page, mi_theap_t* theap);
#define _mi_page_retire(page) pmi_page_retire(page)
#define _mi_malloc_generic(theap, size, zero_huge_alignment, usable) \
  pmi_malloc_generic((theap), (size), (zero_huge_alignment), (usable))
#define _mi_arenas_page_free(page, theap) pmi_abandoned_page_free((page), (theap))
#include "alloc.c"          /* includes alloc-override.c and free.c */
#undef _mi_arenas_page_free
#undef _mi_malloc_generic
#undef _mi_page_retire
#include "alloc-aligned.c"
#include "alloc-posix.c"
#include "arena.c"
#include "arena-meta.c"
#include "bitmap.c"
#include "heap.c"
#include "init.c"
#include "libc.c"
#include "options.c"
#include "os.c"
/* page.c's abandoning of a page (_mi_page_abandon: a full page, or every page of an exiting thread) clears the page's
 * retire mark first. mimalloc clears the mark when its slow path picks a page, but a retired page refilled on the
 * fast path alone keeps it, through its abandoning and the reclaim that brings it back at the tail of a queue; once
 * empty there, free.c does not retire it again (it is marked), _mi_theap_collect_retired looks only at the first
 * page, and a collect that is not forced skips marked pages: it stayed empty in the queue until a forced collect or
 * its thread's exit (a review of 8295ac1, whose first-page rule below made the path common; upstream's only-page
 * rule has it too). tests/children/allocator_retired_page_refilled.py walks that path. Since 491c6ec the slow path
 * clears the first page's mark before it finds the page full (pmi_malloc_generic, below), and a thread's exit clears
 * or frees the marked first pages before it abandons any (_mi_theap_collect_retired, forced), so this clear is a
 * second line: it holds for any other way a page is abandoned. */
static inline void pmi_arenas_page_abandon(mi_page_t* page, mi_theap_t* theap) {
  page->retire_expire = 0;
  _mi_arenas_page_abandon(page, theap);
}
#define _mi_arenas_page_abandon(page, theap) pmi_arenas_page_abandon((page), (theap))
/* kept out of line, as upstream compiles it: with its one caller now pmi_malloc_generic (above), the compiler inlined
   it there and its own callee mi_find_page stayed out of line instead */
mi_decl_noinline void* _mi_malloc_generic(mi_theap_t* theap, size_t size, size_t zero_huge_alignment, size_t* usable) mi_attr_noexcept;
#include "page.c"           /* includes page-queue.c */
#undef _mi_arenas_page_abandon
/* Over-aligned blocks in OS pages (alignment above 64 KiB, and every page under disallow_arena_alloc for
 * such blocks): v3.4.3 registers a page in the page map from the slice of its first block, for the block's
 * slices PLUS the slices between the page's start and its first block (page-map.c, mi_page_map_get_idx,
 * "add for large aligned blocks"). An over-aligned page puts its block 64 KiB (one slice) after its start,
 * so one slice past the end of its mapping is registered as this page, and cleared again when the page is
 * freed. Whatever lives there (another mimalloc page, or memory of another allocator) is then looked up as
 * the wrong page, or as no page: a free of a live block there went to the previous allocator under
 * pymimalloc.install() and glibc aborted ("free(): invalid pointer"). pymimalloc registers the pages from
 * their first slice, for exactly the slices up to the end of their blocks. The 2-level map only (x86-64
 * and every 64-bit target by default); the flat map, if configured, keeps upstream's code. */
#if !MI_PAGE_MAP_FLAT
#define _mi_page_map_register   pmi_upstream_page_map_register
#define _mi_page_map_unregister pmi_upstream_page_map_unregister
#endif
#include "page-map.c"
#if !MI_PAGE_MAP_FLAT
#undef _mi_page_map_register
#undef _mi_page_map_unregister

static size_t pmi_page_map_range(mi_page_t* page, size_t* sub_idx, size_t* slice_count) {
  size_t page_size;
  uint8_t* const page_start = mi_page_area(page, &page_size);
  if (page_size > MI_LARGE_PAGE_SIZE) { page_size = MI_LARGE_PAGE_SIZE - MI_ARENA_SLICE_SIZE; }  /* as upstream */
  uint8_t* const slice_start = mi_page_slice_start(page);
  *slice_count = mi_slice_count_of_size((size_t)(page_start - slice_start) + page_size);
  return _mi_page_map_index(slice_start, sub_idx);
}

bool _mi_page_map_register(mi_page_t* page) {
  if mi_unlikely(_mi_page_map == NULL) {
    if (!_mi_page_map_init()) return false;
  }
  size_t sub_idx, slice_count;
  const size_t idx = pmi_page_map_range(page, &sub_idx, &slice_count);
  return mi_page_map_set_range(page, idx, sub_idx, slice_count);
}

void _mi_page_map_unregister(mi_page_t* page) {
  if mi_unlikely(_mi_page_map == NULL) return;
  size_t sub_idx, slice_count;
  const size_t idx = pmi_page_map_range(page, &sub_idx, &slice_count);
  mi_page_map_set_range(NULL, idx, sub_idx, slice_count);
}
#endif
#include "random.c"
#include "stats.c"
/* -- statistics from every thread ----------------------------------------------------------------------------
 * v3.4.3 counts a heap's pages, abandoned pages and huge blocks per theap, that is per thread, and merges a theap's
 * counters into its heap's only when its thread exits or reads them: mi_heap_stats_get_json and mi_stats_get_json
 * add the CALLING thread's theaps alone (mi_heap_get_stats). A heap another thread allocated from read 0 pages
 * there, and -4 once this thread freed what the other one allocated (a review, 2026-12-06). Here every theap of a
 * heap is added in, under the heap's theaps_lock (theaps join and leave its list under it), and with pymimalloc's
 * exit lock held for writing (pmi_stats_stop), so no thread merges its theap into the heap meanwhile
 * (_mi_theap_free merges BEFORE it leaves the list), and no reset moves counters (pmi_stats_reset). Another live
 * thread's counters are read while it may update them: a count a moment old, as a reader of any counter gets. */
static void pmi_stats_add_heap(mi_stats_t* total, mi_heap_t* heap) {
  mi_lock(&heap->theaps_lock) {
    for (const mi_theap_t* theap = heap->theaps; theap != NULL; theap = theap->hnext) mi_stats_add(total, &theap->stats);
  }
  /* after the theaps: a peak adds to the current count before it (mi_stat_count_add_mt), and the heap's own counts
     are those of exited threads and of pages other threads gave back (which may read below zero alone) */
  mi_stats_add(total, &heap->stats);
}

static bool mi_cdecl pmi_stats_add_heap_visitor(mi_heap_t* heap, void* arg) {
  pmi_stats_add_heap((mi_stats_t*)arg, heap);
  return true;
}

/* `heap`'s statistics (NULL: the process's, as mi_stats_get), from all its threads */
static bool pmi_stats_of(mi_heap_t* heap, mi_stats_t* total) {
  _mi_memzero(total, sizeof(*total));
  mi_stats_header_init(total);
  bool ok = true;
  pmi_stats_stop();
  if (heap != NULL) pmi_stats_add_heap(total, heap);
  else if ((ok = mi_stats_copy(total, &_mi_subproc_main()->stats))) {
    mi_subproc_visit_heaps(mi_subproc_current(), &pmi_stats_add_heap_visitor, total);
  }
  pmi_stats_resume();
  return ok;
}

/* mi_heap_stats_get_json and mi_stats_get_json (heap NULL), from every thread: the JSON in `buf`, or NULL */
char* pmi_stats_json_all(mi_heap_t* heap, size_t size, char* buf);
char* pmi_stats_json_all(mi_heap_t* heap, size_t size, char* buf) {
  mi_stats_t total;
  return pmi_stats_of(heap, &total) ? mi_stats_get_json_from(&total, size, buf) : NULL;
}

/* mi_stats_print_out, from every thread */
void pmi_stats_print_out_all(mi_output_fun* out, void* arg);
void pmi_stats_print_out_all(mi_output_fun* out, void* arg) {
  mi_stats_t total;
  if (pmi_stats_of(NULL, &total)) _mi_stats_print("subproc", _mi_subproc_main()->subproc_seq, &total, out, arg);
}

/* -- full pages of Python's heap ------------------------------------------------------------------------------
 * v3.4.3 keeps up to two full pages of each small size in a thread's page queue (option page_full_retain, 2), where
 * every search for free space looks at them again, and abandons any further full page to its arena. CPython 3.13's
 * built-in mimalloc (v2) keeps no full page in the queue. Python's heap (install()) does the same: its threads'
 * theaps retain none while the option is at mimalloc's 2 and the environment did not set it
 * (MIMALLOC_PAGE_FULL_RETAIN); a value set at run time applies (options["page_full_retain"] = 8), but a scope that
 * restores 2 (options.override) brings the policy back, as the value is the test. Python's heap never stops
 * abandoning its full pages, whatever the option says (-1 turns abandoning off, as the "fifo" preset does): blocks
 * that other threads free into a full page come back to use only through its abandoning, and without it a queue
 * between two threads grew without bound (peak RSS 225 MiB above the start against 1 MiB;
 * tests/children/allocator_producer_consumer.py).
 * Measured against mimalloc's 2 (pyperformance workers under cachegrind, 3.13, 2026-12-05, one start-up state): unpickle
 * 1.0% fewer instructions, pickle 0.4% fewer, json_loads 0.3% more, the other five level; the workload of
 * benchmarks/instructions.py on 3.11 0.99972 of pymalloc's against 1.00014. Upstream's theap.c is compiled with its
 * one call of _mi_theap_options_init routed here. */
static _Atomic(mi_heap_t*) pmi_python_heap_of_mimalloc;
static bool pmi_retain_from_environment;  /* MIMALLOC_PAGE_FULL_RETAIN was set when Python's heap was made */

void pmi_heap_python_policy(mi_heap_t* heap);
void pmi_heap_python_policy(mi_heap_t* heap) {
  /* the two spellings mimalloc reads (options.c, mi_option_init) */
  pmi_retain_from_environment = getenv("MIMALLOC_PAGE_FULL_RETAIN") != NULL || getenv("mimalloc_page_full_retain") != NULL;
  mi_atomic_store_ptr_release(mi_heap_t, &pmi_python_heap_of_mimalloc, heap);
}

static void pmi_theap_options_init(mi_theap_t* theap) {
  _mi_theap_options_init(theap);
  if (_mi_theap_heap(theap) != mi_atomic_load_ptr_acquire(mi_heap_t, &pmi_python_heap_of_mimalloc)) return;
  if (theap->page_full_retain == 2 && !pmi_retain_from_environment) theap->page_full_retain = 0;
  if (theap->page_full_retain < 0) theap->page_full_retain = 0;
  theap->allow_page_abandon = true;
}
/* This thread's theap of Python's heap: NULL before install() or before this thread allocated from it */
static mi_theap_t* pmi_python_theap_here(void) {
  mi_heap_t* const heap = mi_atomic_load_ptr_acquire(mi_heap_t, &pmi_python_heap_of_mimalloc);
  return (heap == NULL ? NULL : _mi_heap_theap_peek(heap));
}
long pmi_python_heap_full_retain(void);
long pmi_python_heap_full_retain(void) {
  mi_theap_t* const theap = pmi_python_theap_here();
  if (theap == NULL) return -2;
  return theap->allow_page_abandon ? theap->page_full_retain : -1;
}
/* -- an emptied huge page kept for the next huge block ------------------------------------------------------------
 * v3.4.3 gives every block above 512 KiB (MI_LARGE_MAX_OBJ_SIZE) a page of its own (a singleton page in the huge
 * queue), takes it fresh from an arena at each allocation and gives it back at each free: a bitmap search, the page
 * map set and cleared for every 64 KiB slice, a purge scheduled. mimalloc never retires such a page (_mi_page_retire
 * skips the huge queue). A loop that allocates and frees one 1 MiB block paid about 2,300 instructions a pair for it
 * (callgrind, heap.malloc(1 MiB).free() from Python: 4,105 a loop in all), and a C loop of such pairs ran 10 times
 * glibc's time, which keeps the freed chunk in its heap (its mmap threshold rises to the size freed, up to 32 MiB).
 * Here a theap keeps ONE emptied huge page, in its huge queue, marked retired as mimalloc marks an emptied small page
 * (retire_expire), and its next huge allocation takes that page if the block fits and at least half of it is used;
 * otherwise the page goes back to its arena first (pmi_malloc_generic_large). Kept: pages of arenas, blocks up to
 * PMI_HUGE_KEEP_MAX, and only for the thread whose theap allocated the page (for an abandoned page, the one whose free
 * emptied it, if it is that theap's thread, under page_reclaim_on_free >= 0). The kept page is freed as mimalloc frees
 * retired pages: after 4 rounds of 1000 slow-path allocations without use (_mi_theap_collect_retired), by a forced
 * collect of its thread, at the thread's exit, and with its heap. Only its own thread can free it, so an idle thread
 * holds it: a review had 8 idle threads keep 240 MiB with pages of 30 MiB, and a heap in a 64 MiB exclusive Arena
 * raise MemoryError for a 24 MiB block while another thread kept 30 MiB of it. So the limit is 4 MiB (a thread keeps
 * at most that per heap it used), and a heap of an exclusive arena keeps nothing. A heap's walks see a kept page as
 * an area with no block in use, as they see a retired small page. */
#define PMI_HUGE_KEEP_MAX ((size_t)4 << 20)

static inline bool pmi_huge_page_keepable(const mi_page_t* page) {
  const size_t bsize = mi_page_block_size(page);
  return bsize > MI_LARGE_MAX_OBJ_SIZE && bsize <= PMI_HUGE_KEEP_MAX && page->memid.memkind == MI_MEM_ARENA &&
         mi_page_is_singleton(page) && mi_page_heap(page)->exclusive_arena == NULL;
}

/* mark `page` (all free, owned by `theap`, alone in its huge queue) as the theap's kept huge page */
static void pmi_huge_page_keep(mi_theap_t* theap, mi_page_t* page) {
  mi_assert_internal(theap->pages[MI_BIN_HUGE].first == page && theap->pages[MI_BIN_HUGE].last == page);
  mi_assert_internal(mi_page_all_free(page));
#if MI_STAT > 0
  mi_theap_stat_counter_increase(theap, pages_retire, 1);
#endif
  mi_page_set_has_interior_pointers(page, false);
  page->retire_expire = MI_RETIRE_CYCLES / 4;  /* as _mi_page_retire marks pages of blocks above 8 KiB */
  if (MI_BIN_HUGE < theap->page_retired_min) theap->page_retired_min = MI_BIN_HUGE;
  if (MI_BIN_HUGE > theap->page_retired_max) theap->page_retired_max = MI_BIN_HUGE;
}

/* free.c's mi_abandoned_page_try_free, for an abandoned page that is all free and already out of its arena's abandoned
 * map: keep it if it is a huge page of the calling thread's theap (above), or give it back to its arena as upstream */
void pmi_abandoned_page_free(mi_page_t* page, mi_theap_t* theap) {
  if (pmi_huge_page_keepable(page) && _mi_thread_is_initialized()) {
    mi_theap_t* const own = _mi_page_associated_theap_peek(page);
    if (own != NULL && own == page->theap && own->tld != NULL && own->allow_page_reclaim &&
        own->pages[MI_BIN_HUGE].first == NULL) {
      _mi_theap_page_reclaim(own, page);  /* as mi_abandoned_page_try_reclaim: at the end of its (empty) huge queue */
      pmi_huge_page_keep(own, page);
      return;
    }
  }
  _mi_arenas_page_free(page, theap);
}

/* The reused page, now full, goes to this theap's full queue, where mi_page_to_full puts a full page for a theap
 * that does not abandon them, even in a theap that does: abandoning cost each reuse an arena's bitmaps and a purge
 * check, and the free a reclaim (heap.empty(1 MiB) took 1.36-1.39 times np.empty's time, then 0.94-0.96: 2026-12-06, docs/benchmarks.md). Until its block
 * is freed the page is this thread's alone: a free in another thread leaves it to this thread. So an abandoning theap
 * holds ONE such page, alone in its full queue. At the next reuse, the one there is freed if another thread freed its
 * block meanwhile (a producer that hands its blocks over would otherwise strand a page at each reuse); if its block is
 * still alive, it stays, and the new page is abandoned as mimalloc does (a ring of huge blocks: moving each page in
 * and out of the full queue before abandoning it cost a 1 MiB ring 13-24%). At most PMI_HUGE_KEEP_MAX more per
 * thread and heap, besides the kept page. */
/* `theap`'s reused page waiting in its full queue (above), given back if other threads freed its block */
static void pmi_reused_page_collect(mi_theap_t* theap) {
  mi_page_queue_t* const full = &theap->pages[MI_BIN_FULL];
  mi_page_t* const page = full->first;
  if (!theap->allow_page_abandon || page == NULL || mi_page_block_size(page) <= MI_LARGE_MAX_OBJ_SIZE) return;
  _mi_page_free_collect(page, false);  /* the frees of other threads */
  if (mi_page_all_free(page)) _mi_page_free(page, full);
}

static void pmi_huge_page_to_full(mi_theap_t* theap, mi_page_queue_t* pq, mi_page_t* page) {
  mi_page_queue_t* const full = &theap->pages[MI_BIN_FULL];
  pmi_reused_page_collect(theap);
  if (!theap->allow_page_abandon || full->first != NULL) {
    mi_page_to_full(page, pq);  /* mimalloc's own: abandoned, or into a full queue of a theap that does not abandon */
    return;
  }
  mi_page_queue_enqueue_from(full, pq, page);
  _mi_page_free_collect(page, false);
}

/* A collect in this thread, forced or not, gives back the reused page of `heap` waiting in this thread's full queue
 * once other threads freed its block: mimalloc's collect that is not forced skips full pages, and the page would wait
 * for this thread's next reuse (a review: pages 1 after heap.collect() with nothing alive). */
void pmi_heap_collect_reused(mi_heap_t* heap);
void pmi_heap_collect_reused(mi_heap_t* heap) {
  mi_theap_t* const theap = _mi_heap_theap_peek(heap);
  if (theap != NULL) pmi_reused_page_collect(theap);
}

/* page.c's _mi_page_unfull, without its assertion that the theap does not abandon full pages (pmi_huge_page_to_full) */
static void pmi_page_unfull(mi_theap_t* theap, mi_page_t* page) {
  mi_page_set_in_full(page, false);  /* to get the right queue */
  mi_page_queue_t* const pq = mi_theap_page_queue_of(theap, page);
  mi_page_set_in_full(page, true);
  mi_page_queue_enqueue_from_full(pq, &theap->pages[MI_BIN_FULL], page);
}

/* A huge allocation where `page` is the theap's kept huge page (first in the huge queue `pq`, marked): from that page if
 * the block fits, as the end of _mi_malloc_generic allocates from the page it found; otherwise the page goes back to
 * its arena first, and mimalloc's slow path takes a fresh one. */
static mi_decl_noinline void* pmi_huge_page_reuse(mi_theap_t* theap, mi_page_queue_t* pq, mi_page_t* page, size_t size,
                                                  size_t zero_huge_alignment, size_t* usable) mi_attr_noexcept {
  page->retire_expire = 0;
  _mi_page_free_collect(page, false);
  const size_t bsize = mi_page_block_size(page);
  if (size <= bsize && size > bsize / 2 && page->used == 0 && mi_page_immediate_available(page)) {
    if (usable != NULL) *usable = mi_page_usable_block_size(page);
    mi_theap_stat_increase(theap, malloc_huge, bsize);  /* as mi_huge_page_alloc counts; free.c's mi_stat_free undoes it */
    mi_theap_stat_counter_increase(theap, malloc_huge_count, 1);
    void* const p = _mi_page_malloc_zero(theap, page, size, (zero_huge_alignment & 1) != 0);
    pmi_huge_page_to_full(theap, pq, page);
    return p;
  }
  if (mi_page_all_free(page)) _mi_page_free(page, pq);
  return _mi_malloc_generic(theap, size, zero_huge_alignment, usable);
}

/* -- empty pages of Python's heap ------------------------------------------------------------------------------
 * When the last block of a page is freed, v3.4.3 keeps the page for later (retires it: _mi_page_retire) only if it
 * is the one page of its size in the theap's queue, and otherwise gives it back to its arena. With Python's heap
 * abandoning every full page (above), a page that fills during a loop leaves the queue, comes back at its end when
 * the loop's objects are freed (reclaimed, at the queue's tail), and the page the loop went on with, emptied by the
 * same frees, is then not alone: it goes back to the arena, and the next loop fills the first page again and takes
 * a fresh one. pyperformance's unpickle did that in every loop on 3.13 once pymimalloc's start-up changed (2026-12-06,
 * cachegrind, medians of 5 start-up states: 0.9941 of pymalloc's instructions, against 0.9475 for CPython's built-in
 * mimalloc). Python's heap also retires an emptied page that is the FIRST of its queue, the page allocations are
 * served from: the next loop starts in it again (unpickle 0.9455, in all five states within 0.0016). mimalloc's own
 * rule for retired pages stays: at most one a queue (the first), freed by _mi_theap_collect_retired after 16 rounds
 * of 1000 slow-path allocations unless used again, and by a forced collect of its thread (pymimalloc.collect). */
void pmi_page_retire(mi_page_t* page) {
  mi_page_queue_t* const pq = mi_page_queue_of(page);
  mi_theap_t* const theap = mi_page_theap(page);
  if (page->retire_expire == 0 && mi_page_is_in_full(page) && pmi_huge_page_keepable(page) &&
      theap->pages[MI_BIN_HUGE].first == NULL) {
    pmi_page_unfull(theap, page);  /* a reused page (pmi_huge_page_to_full), or any full page of a heap that never
                                      abandons them: into the huge queue */
    pmi_huge_page_keep(theap, page);
    return;
  }
  if (pq->first == page && pq->last != page && !mi_page_queue_is_special(pq) &&
      mi_page_block_size(page) <= MI_SMALL_MAX_OBJ_SIZE &&
      _mi_theap_heap(theap) == mi_atomic_load_ptr_relaxed(mi_heap_t, &pmi_python_heap_of_mimalloc)) {
    /* as _mi_page_retire does for the only page of a queue */
#if MI_STAT > 0
    mi_theap_stat_counter_increase(theap, pages_retire, 1);
#endif
    mi_page_set_has_interior_pointers(page, false);
    page->retire_expire = MI_RETIRE_CYCLES;
    const size_t index = (size_t)(pq - theap->pages);
    if (index < theap->page_retired_min) theap->page_retired_min = index;
    if (index > theap->page_retired_max) theap->page_retired_max = index;
    return;
  }
  /* A page of blocks above 8 KiB that mimalloc retires (alone in its queue) stays for ONE round of the retire
   * collection in Python's heap, where mimalloc keeps it for four (MI_RETIRE_CYCLES / 4). A round
   * (_mi_theap_collect_retired) runs before each fresh page and every 1000 slow-path allocations, and an allocation
   * that takes the page clears its mark, so a loop that frees and allocates blocks of one size keeps its page (but
   * for one fresh page in 1000 rounds of the loop). Importing a module reads its .pyc file into one block of the
   * file's size and frees it: a 512 KiB or 4 MiB page for each size, written through, while the next file of another
   * size took fresh slices of the arena. Given back at the next round, the page's slices, still resident, are taken
   * by the next page. The imports of a pyperformance worker peaked 0.2-0.3 MiB lower, with loops of 20-200 KB blocks
   * level in time (2026-12-07, docs/benchmarks.md). Decided before _mi_page_retire, which may free the page. */
  const bool retired_briefly =
      page->retire_expire == 0 && pq->first == page && pq->last == page && !mi_page_queue_is_special(pq) &&
      mi_page_block_size(page) > MI_SMALL_MAX_OBJ_SIZE &&
      _mi_theap_heap(theap) == mi_atomic_load_ptr_relaxed(mi_heap_t, &pmi_python_heap_of_mimalloc);
  _mi_page_retire(page);
  if (retired_briefly) page->retire_expire = 1;  /* kept: mimalloc retires the only page of a queue */
}

/* -- a nearly full page alone in its queue (Python's heap) ------------------------------------------------------
 * mimalloc refills a page's free list, when it runs out, with the blocks freed on that page since the last refill
 * (local_free). Where long-lived objects fill a queue's only page but for a few slots that temporaries cycle through,
 * each refill gives those few blocks back, and every few allocations of that size take the slow path; the page never
 * fills, so no second page ever comes. pyperformance's raytrace on 3.13 did that for 32-byte blocks: 93,000 to
 * 145,000 slow paths in two loops with 2 to 7 free blocks each (a diagnostic build under valgrind, 2026-12-06), where
 * CPython's built-in mimalloc took 69,000 slow paths in all, and 0.10% more instructions than the built-in in all 15
 * start-up states measured. When such a refill would give fewer than PMI_FEW_FREE_BLOCKS blocks, Python's heap takes
 * a fresh page (mi_page_fresh), which comes in front of the nearly full one, and the refill then finds that page. The
 * nearly full page stays behind it, with its free blocks, for the searches that look past the first page. Where
 * mi_page_fresh reclaims an abandoned page of this size instead, that page joins the queue at its tail, and this
 * refill and the next are mimalloc's own (the page is no longer alone). Python's heap only: it keeps an emptied page
 * that is the first of its queue ("empty pages of Python's heap", above), so the fresh page outlives a loop that
 * allocates and frees one block. A heap on mimalloc's own rule gives that page back to its arena when it empties, not
 * being the queue's only page, and took a fresh page for every allocation of such a loop (tried, 2026-12-06). A page
 * of fewer than 32 blocks is left to mimalloc. The nearly full page keeps no retire mark (pmi_malloc_generic, below,
 * clears it first), and the fresh page comes in front in the slow path of an allocation from that queue, so a marked
 * page is still the first of its queue. */
#define PMI_FEW_FREE_BLOCKS 8
static mi_decl_noinline void* pmi_malloc_generic_nearly_full(mi_theap_t* theap, mi_page_t* page, size_t size,
                                                             size_t zero_huge_alignment,
                                                             size_t* usable) mi_attr_noexcept {
  if (page->capacity >= 4 * PMI_FEW_FREE_BLOCKS &&
      _mi_theap_heap(theap) == mi_atomic_load_ptr_relaxed(mi_heap_t, &pmi_python_heap_of_mimalloc))
    (void)mi_page_fresh(theap, mi_theap_page_queue_of(theap, page));  /* NULL (out of memory): mimalloc's slow path */
  return _mi_malloc_generic(theap, size, zero_huge_alignment, usable);
}

/* -- retire marks behind the first page ------------------------------------------------------------------------
 * A retired page (retire_expire != 0) keeps its mark while it is refilled on the fast path, and the slow path may then
 * put another page in front of it: a fuller page with room that mi_page_queue_find_free_ex prefers to the retired one
 * (used to its capacity, not to its reserve) and moves to the front, or a fresh page. Behind the first, the mark does
 * nothing good: _mi_theap_collect_retired looks only at the first page of a queue. It does harm: once the page is
 * empty again, free.c does not retire it (it is marked), and a collect that is not forced skips it, so it stayed
 * empty in the queue until a forced collect or a search of the queue happened on it. Random walks over the queues
 * found it once the first-page rule above made it common (2026-12-06, tests/children/allocator_page_queues_walk.py:
 * 1 KiB blocks, all three seeds, at steps 10,535, 40,712 and 1,135); upstream's only-page rule has the path too,
 * with a page reclaimed behind it.
 * A retired page is always the first of its queue when it is marked, and only the slow path of an allocation from
 * that queue puts another page in front of it (reclaimed pages and pages no longer full join at the tail). That slow
 * path clears the mark anyway when it picks the page again, and page.c's abandoning when the page is full. So every
 * allocation's slow path (alloc.c's calls of _mi_malloc_generic) first clears the mark of its queue's first page, and
 * then jumps to mimalloc's: a few instructions, where clearing the mark of the page behind the first after the call
 * cost 0.1-0.2% of pyperformance's instructions on 3.13 (it kept the frame of a call). The empty theap of a thread's
 * first allocation has empty queues. Any heap. */
static mi_decl_noinline void* pmi_malloc_generic_large(mi_theap_t* theap, size_t size, size_t zero_huge_alignment,
                                                       size_t* usable) mi_attr_noexcept {
  /* an over-aligned request (alloc-aligned.c: huge_alignment set, the size MI_SMALL_SIZE_MAX + 1) takes a page of its
     own from the huge queue, whatever its size's queue holds */
  if ((zero_huge_alignment & ~(size_t)1) == 0) {
    mi_page_queue_t* const pq = mi_page_queue(theap, size);
    mi_page_t* const first = pq->first;
    if (first != NULL && first->retire_expire != 0) {
      if (mi_page_queue_is_huge(pq)) return pmi_huge_page_reuse(theap, pq, first, size, zero_huge_alignment, usable);
      first->retire_expire = 0;
    }
  }
  return _mi_malloc_generic(theap, size, zero_huge_alignment, usable);
}
mi_decl_noinline void* pmi_malloc_generic(mi_theap_t* theap, size_t size, size_t zero_huge_alignment, size_t* usable) mi_attr_noexcept {
#if MI_THEAP_INITASNULL
  /* where a thread's first theap pointer is NULL (not Linux), mimalloc's slow path takes NULL and initialises */
  if mi_unlikely(theap == NULL) return _mi_malloc_generic(theap, size, zero_huge_alignment, usable);
#endif
  if mi_unlikely(size > MI_SMALL_SIZE_MAX) return pmi_malloc_generic_large(theap, size, zero_huge_alignment, usable);
  mi_page_t* const first = _mi_theap_get_free_small_page(theap, size);  /* the queue's first, or the empty page */
  if (first->retire_expire != 0) first->retire_expire = 0;
  if mi_unlikely(first->free == NULL && first->next == NULL && first->local_free != NULL &&
                 first->capacity == first->reserved && first->capacity - first->used < PMI_FEW_FREE_BLOCKS)
    return pmi_malloc_generic_nearly_full(theap, first, size, zero_huge_alignment, usable);
  return _mi_malloc_generic(theap, size, zero_huge_alignment, usable);
}

/* This thread's part of Python's heap collected, as mi_collect collects its part of the default heap: pages with no
 * block in use (retired ones included, with `force`) go back to the arena. Python's heap is never walked or closed,
 * and only this thread touches its theap's queues, so nothing else need stop. Nothing before install() or before
 * this thread allocated from it. */
void pmi_python_heap_collect_here(bool force);
void pmi_python_heap_collect_here(bool force) {
  mi_theap_t* const theap = pmi_python_theap_here();
  if (theap == NULL) return;
  pmi_reused_page_collect(theap);
  mi_theap_collect(theap, force);
}

/* Empty retired pages out of sight: mimalloc's retire collection (_mi_theap_collect_retired) frees a retired page only
 * as the first of its queue, and only in a bin between theap->page_retired_min and _max, and a collect that is not
 * forced skips retired pages. An empty page marked retired (retire_expire != 0) anywhere else stays until a search of
 * its queue happens to pick it or a forced collect. Counts them over this thread's queues of Python's heap (the full
 * queue aside: Python's heap abandons full pages, all but one reused huge page, which is never retired). */
long pmi_python_heap_retired_out_of_sight(void);
long pmi_python_heap_retired_out_of_sight(void) {
  mi_theap_t* const theap = pmi_python_theap_here();
  if (theap == NULL) return -2;
  long out_of_sight = 0;
  for (size_t bin = 0; bin < MI_BIN_FULL; bin++) {
    const mi_page_queue_t* const pq = &theap->pages[bin];
    for (const mi_page_t* page = pq->first; page != NULL; page = page->next) {
      if (page->retire_expire != 0 && mi_page_all_free(page) &&
          (page != pq->first || bin < theap->page_retired_min || bin > theap->page_retired_max)) out_of_sight++;
    }
  }
  return out_of_sight;
}

long pmi_python_heap_first_page_kept(size_t size);
long pmi_python_heap_first_page_kept(size_t size) {
  mi_theap_t* const theap = pmi_python_theap_here();
  if (theap == NULL) return -2;
  const mi_page_t* const page = mi_page_queue(theap, size + MI_PADDING_SIZE)->first;  /* as a request of `size` asks */
  if (page == NULL) return -1;
  return (page->retire_expire != 0 && mi_page_all_free(page)) ? 1 : 0;
}

long pmi_python_heap_nearly_full_walk(size_t size, size_t left_free, size_t rounds);
long pmi_python_heap_nearly_full_walk(size_t size, size_t left_free, size_t rounds) {
  mi_theap_t* const theap = pmi_python_theap_here();
  if (theap == NULL) return -2;
  mi_heap_t* const heap = _mi_theap_heap(theap);
  const mi_page_queue_t* const pq = mi_page_queue(theap, size + MI_PADDING_SIZE);  /* as a request of `size` asks */
  if (pq->first != NULL) return -1;
  void* const first = mi_heap_malloc(heap, size);
  if (first == NULL) return -3;
  mi_page_t* const page = _mi_ptr_page(first);
  const size_t count = page->reserved;
  void** const blocks = (void**)malloc(count * sizeof(void*));  /* the C library's: nothing of Python's heap */
  if (blocks == NULL) { mi_free(first); return -3; }
  blocks[0] = first;
  size_t made = 1;
  while (made < count && (blocks[made] = mi_heap_malloc(heap, size)) != NULL && _mi_ptr_page(blocks[made]) == page)
    made++;
  long result = -4;  /* the page did not fill from the queue's first allocation on */
  if (made == count && page->used == page->reserved && left_free < count) {
    for (size_t i = 0; i < left_free; i++) mi_free(blocks[--made]);
    mi_page_t* in_front = NULL;
    bool same = true;
    for (size_t r = 0; r < rounds; r++) {
      mi_free(mi_heap_malloc(heap, size));
      if (r == 0) in_front = pq->first;
      else if (pq->first != in_front) same = false;
    }
    result = 10 * (long)pq->count + (same ? 1 : 0);
  }
  else if (made < count && blocks[made] != NULL) made++;  /* the one that landed elsewhere */
  for (size_t i = 0; i < made; i++) mi_free(blocks[i]);
  free(blocks);
  return result;
}

#define _mi_theap_options_init(theap) pmi_theap_options_init(theap)
#include "theap.c"
#undef _mi_theap_options_init

static void* pmi_thread_locals_rezalloc(void* p, size_t size) {
    uint8_t* const q = (uint8_t*)mi_rezalloc(p, size);
    if (q != NULL) {
        const size_t usable = mi_usable_size(q);
        if (usable > size) _mi_memzero(q + size, usable - size);
    }
    return q;
}
#define mi_rezalloc(p, size) pmi_thread_locals_rezalloc((p), (size))
#include "threadlocal.c"
#undef mi_rezalloc

#include "prim/prim.c"
#if MI_OSX_ZONE
#include "prim/osx/alloc-override-zone.c"
#endif

/* The usable size of the block that starts at `block` in `page`, as mimalloc's mi_usable_size reports it
 * but without its assertions, so pmi_usable_size may ask about any block, freed ones included. In padded
 * builds (debug, MI_SECURE >= 3, memory checkers) the padding mimalloc wrote behind the request gives the
 * exact size; a block whose padding does not decode (freed, or never handed out) counts whole. It lives
 * here because mi_page_decode_padding is static in free.c, which this translation unit includes. */
size_t pmi_page_block_usable(const mi_page_t* page, const void* block) {
#if MI_PADDING
    size_t delta, bsize = mi_page_usable_block_size(page);
#if MI_TRACK_ASAN
    /* mi_page_decode_padding unpoisons, reads and re-poisons the padding, which races another thread
       decoding the same block (its free): under ASan a block counts whole, its padding unread */
    (void)delta;
    return bsize;
#endif
    if (mi_page_decode_padding(page, (const mi_block_t*)block, &delta, &bsize)) return bsize - delta;
    return bsize;
#else
    (void)block;
    return mi_page_usable_block_size(page);
#endif
}

/* -- the allocator hook's view of a block (pmi_allocator.c) ------------------------------------------------
 * Free and realloc through the hook look a block's page up once and decide everything from it: whether
 * mimalloc owns the block at all (a NULL page: the previous allocator's), which heap it is in, and the free
 * itself, through mimalloc's page-aware path (mi_free_ex, static in free.c, which this unit includes).
 * pmi_allocator.c calls these across units; the build's link-time optimisation inlines them there (always:
 * they are most of the instructions of CPython's every free). */
#define PMI_HOOK_INLINE inline __attribute__((always_inline))
struct mi_page_s* pmi_page_of(const void* p);
struct mi_page_s* pmi_page_of_committed(const void* p);
mi_heap_t* pmi_page_owner(const struct mi_page_s* page);
bool pmi_page_in(const struct mi_page_s* page, const mi_heap_t* heap);
void pmi_page_free(struct mi_page_s* page, void* p);
size_t pmi_page_usable(const struct mi_page_s* page, const void* p);
void* pmi_page_realloc(mi_heap_t* heap, struct mi_page_s* page, void* p, size_t size, size_t want);
bool pmi_page_free_local(struct mi_page_s* page, void* p);
void* pmi_fast_malloc(mi_heap_t* heap, size_t size);
void* pmi_fast_malloc_small(mi_heap_t* heap, size_t size);
void* pmi_fast_zalloc_small(mi_heap_t* heap, size_t size);
void* pmi_heap_malloc_slow(mi_heap_t* heap, size_t size);
void* pmi_heap_zalloc_slow(mi_heap_t* heap, size_t size);
void* pmi_fast_malloc_counted(mi_heap_t* heap, size_t size, size_t* counted);
void* pmi_fast_malloc_small_counted(mi_heap_t* heap, size_t size, size_t* counted);
void* pmi_heap_malloc_counted_slow(mi_heap_t* heap, size_t size, size_t* counted);
void pmi_theap_ensure(mi_heap_t* heap);
void pmi_world_enter(void);
void pmi_world_leave(void);
bool pmi_world_held(void);

/* Whether the page map's top level is committed whole, so that pmi_page_of_committed may leave out the commit test:
 * mimalloc commits it at start where the OS overcommits (Linux's default) and sets every bit of mi_page_map_commit
 * then; a bit is never cleared while the process runs. */
bool pmi_page_map_committed(void) {
#if MI_PAGE_MAP_FLAT
  return false;
#else
  return mi_atomic_load_relaxed(&mi_page_map_commit) == ~(mi_bfield_t)0;
#endif
}

/* _mi_safe_ptr_page, less its test for NULL (NULL falls in the first slice of the address space, which no mapping,
 * so no mimalloc page, ever covers: its entry is empty, as for any address not mimalloc's) and less the commit test,
 * for a process where pmi_page_map_committed(): 4 to 5 instructions fewer in each free of the allocator hook
 * (pmi_allocator.c installs the free and realloc that use it then) */
PMI_HOOK_INLINE mi_page_t* pmi_page_of_committed(const void* p) {
#if MI_PAGE_MAP_FLAT
  return _mi_safe_ptr_page(p);
#else
  if mi_unlikely(p >= mi_page_map_max_address) return NULL;
  size_t sub_idx;
  const size_t idx = _mi_page_map_index(p, &sub_idx);
  mi_page_t** const sub = _mi_page_map[idx];
  if mi_unlikely(sub == NULL) return NULL;
  return sub[sub_idx];
#endif
}

/* The same with the commit test, wherever the page map may be committed in parts */
PMI_HOOK_INLINE mi_page_t* pmi_page_of(const void* p) {
#if !MI_PAGE_MAP_FLAT
  if (p < mi_page_map_max_address && !mi_page_map_is_committed(_mi_page_map_index(p, NULL), NULL)) return NULL;
#endif
  return pmi_page_of_committed(p);
}

mi_heap_t* pmi_page_owner(const mi_page_t* page) { return mi_page_heap(page); }  /* as mi_heap_of */
/* whether `page` is of `heap`, which is not the main heap (whose pages say NULL): one load, no call */
PMI_HOOK_INLINE bool pmi_page_in(const mi_page_t* page, const mi_heap_t* heap) { return page->heap == heap; }

/* `page` is not NULL */
PMI_HOOK_INLINE void pmi_page_free(mi_page_t* page, void* p) { mi_free_ex(p, NULL, page); }

/* mi_free_ex's first case alone, and only where it calls nothing: a block of a page this thread owns, that is
   neither full nor holds aligned blocks (mi_free_ex's own test), and is not its page's last live block (whose free
   retires the page) unless the page is retired already. false, with nothing done, otherwise: the caller then frees through pmi_page_free. With no call
   left in it, a caller's common case needs no saved registers (the glue's free of a Python object). */
PMI_HOOK_INLINE bool pmi_page_free_local(mi_page_t* page, void* p) {
  if mi_unlikely((_mi_prim_thread_id() ^ mi_page_xthread_id(page)) != 0) return false;
  /* the last live block of a page retired already (retire_expire set: a page that one block is allocated from and
     freed to over and over) frees without a call too */
  if mi_unlikely(page->used <= 1 && page->retire_expire == 0) return false;
  mi_free_block_local(page, mi_validate_block_from_ptr(page, p), false /* was guarded */, true /* track stats */,
                      false /* not full: the test above */);
  return true;
}

/* The usable size of the block at `p` on `page`, as mi_usable_size reports it (padding decoded), without the lookup */
PMI_HOOK_INLINE size_t pmi_page_usable(const mi_page_t* page, const void* p) { return _mi_usable_size(p, page); }

/* mi_heap_realloc of the block `p` on `page`, a page of `heap` (Python's heap, found by the hook), to `size` bytes,
   asking for `want` bytes (at least `size`: with room) when it must move. As _mi_theap_realloc_zero: it stays
   where it is while the new size fits its usable size, down to half of it; else a new block, the copy, and the
   free. But the page is the one the hook found (mimalloc's looks it up for the usable size and again for its free,
   and maps the heap to this thread's theap once more), and the new block takes mimalloc's fast path inlined:
   unpickle on 3.13 spent 127 instructions more per realloc than CPython's built-in mimalloc. */
void* pmi_page_realloc(mi_heap_t* heap, mi_page_t* page, void* p, size_t size, size_t want) {
  const size_t usable = _mi_usable_size(p, page);
  if (size <= usable && size >= usable / 2) return p;
  void* q = pmi_fast_malloc(heap, want);
  if (q == NULL && want != size) q = pmi_fast_malloc(heap, size);
  if (q == NULL) return NULL;
  const size_t copy = (size > usable ? usable : size);
  mi_track_mem_defined(p, copy);  /* as mimalloc: the usable size may be more than a memory checker knows */
  _mi_memcpy(q, p, copy);
  mi_free_ex(p, NULL, page);
  return q;
}

/* mi_heap_malloc, with everything but its fast path (a small block from this thread's theap of `heap`, found
 * through mimalloc's cache of the last theap used) out of line, so that the hook's malloc saves no register. */
void pmi_theap_ensure_slow(mi_heap_t* heap);
PMI_HOOK_INLINE void pmi_theap_ensure(mi_heap_t* heap) {
  if mi_unlikely(_mi_heap_theap_peek(heap) == NULL) pmi_theap_ensure_slow(heap);
}

/* Whether `theap`, this thread's theap that mimalloc used last (_mi_theap_cached(): its cache, as its fast path
   finds it), is `heap`'s; false for a theap not set up yet. Every fast path of the glue starts with this test. */
static inline __attribute__((always_inline)) bool pmi_theap_is_of(const mi_theap_t* theap, const mi_heap_t* heap) {
#if MI_THEAP_INITASNULL
  if mi_unlikely(theap == NULL) return false;
#endif
  return _mi_theap_heap(theap) == heap;
}

/* pmi_fast_malloc's fast path alone: a small block from this thread's theap of `heap` (mimalloc's own refill, when
   the page's free list is empty, is a tail call), or NULL where it does not apply, with nothing done (or out of
   memory: the caller's slow path then tries again). `heap` is not NULL: a theap not yet set up says NULL for its
   heap. */
static inline __attribute__((always_inline)) void* pmi_fast_small(mi_heap_t* heap, size_t size, bool zero) {
  mi_theap_t* const theap = _mi_theap_cached();
  if mi_likely(pmi_theap_is_of(theap, heap) && size <= MI_SMALL_SIZE_MAX) {
    return mi_theap_malloc_small_zero_nonnull(theap, size, zero, NULL);
  }
  return NULL;
}

PMI_HOOK_INLINE void* pmi_fast_malloc_small(mi_heap_t* heap, size_t size) { return pmi_fast_small(heap, size, false); }

/* The same for a zeroed block: mimalloc's own fast path, which leaves out the memset where the page's free memory is
   known to be zero. The hook's calloc of a small block (a list's items, say) then runs the code its malloc keeps in
   the instruction cache, not mi_heap_zalloc's. */
PMI_HOOK_INLINE void* pmi_fast_zalloc_small(mi_heap_t* heap, size_t size) { return pmi_fast_small(heap, size, true); }

PMI_HOOK_INLINE void* pmi_fast_malloc(mi_heap_t* heap, size_t size) {
  mi_theap_t* const theap = _mi_theap_cached();
  if mi_likely(pmi_theap_is_of(theap, heap) && size <= MI_SMALL_SIZE_MAX) {
    return mi_theap_malloc_small_zero_nonnull(theap, size, false, NULL);
  }
  return pmi_heap_malloc_slow(heap, size);
}

/* -- blocks of 1 to 512 KiB from the first page of their queue ---------------------------------------------------
 * mimalloc's fast path serves blocks up to MI_SMALL_SIZE_MAX (1 KiB) from the theap's direct page of their size; every
 * larger block takes its slow path, _mi_malloc_generic (through pmi_malloc_generic_large, above), even when the first
 * page of its queue has a free block, which is the common case. From the hook that was about 165 instructions a block
 * (pyperformance's pickle on 3.13, callgrind: 97,400 such blocks, half through PyObject_Malloc, half PyMem_Malloc),
 * where CPython's built-in mimalloc (v2) takes about 127; this path takes about 75, the 0.5% of those blocks it leaves
 * to mimalloc included. pmi_theap_malloc_medium is mimalloc's own path for that common case, step for step: the
 * generic count and its administrative tasks every 1,000th slow-path allocation (left to _mi_malloc_generic: it
 * returns NULL when this one would be the 1,000th), mi_find_free_page's first page, the move of that local free list
 * to its free list and the clear of its retire mark, the block, and the move of a full page of blocks above
 * MI_SMALL_MAX_OBJ_SIZE to the full queue. Anything else (no first page, no free block on it, a huge block, a thread's
 * theap not set up) is NULL with nothing done: the caller takes mimalloc's path. Checked builds take it too: with
 * MI_SECURE >= 2 it extends the page at random, as mi_find_free_page does, and with MI_GUARDED (a block behind a guard
 * page now and then) it counts down to the next sample as mimalloc's generic allocation does, and leaves the sample to
 * it. Any heap: the caller passes a theap this thread owns. */
static inline void* pmi_theap_malloc_medium(mi_theap_t* theap, size_t size, bool zero) {
  if mi_unlikely(size > MI_LARGE_MAX_OBJ_SIZE - MI_PADDING_SIZE || theap->generic_count >= 1000 - 1) return NULL;
  mi_page_queue_t* const pq = mi_page_queue(theap, size + MI_PADDING_SIZE);
  mi_page_t* const page = pq->first;
  if mi_unlikely(page == NULL || (page->free == NULL && page->local_free == NULL)) return NULL;
#if MI_GUARDED
  /* mi_theap_malloc_use_guarded's count down, where it does not sample: a sample is mimalloc's to take */
  if (theap->guarded_sample_count == 1) return NULL;
  theap->guarded_sample_count--;
#endif
  (void)mi_page_free_quick_collect(page);  /* true: its free blocks, or the local ones moved there */
  theap->generic_count++;
#if MI_SECURE >= 2  /* as mi_find_free_page: extend half the time, for randomness */
  if (page->capacity < page->reserved && ((_mi_theap_random_next(theap) & 1) == 1)) {
    (void)mi_page_extend_free(theap, page);
  }
#endif
  page->retire_expire = 0;
  void* const p = mi_page_malloc_zero(theap, page, size + MI_PADDING_SIZE, zero, NULL);  /* a free block: no refill */
  if (mi_page_block_size(page) > MI_SMALL_MAX_OBJ_SIZE && mi_page_is_full(page)) mi_page_to_full(page, pq);
  mi_track_malloc(p, size, zero);
  return p;
}
/* the same for a block of `heap` above the fast path's sizes, from this thread's theap of `heap` when it is the one
   mimalloc last used (as the fast path finds it); NULL, with nothing done, otherwise */
static inline void* pmi_heap_malloc_medium(mi_heap_t* heap, size_t size, bool zero) {
  if (size <= MI_SMALL_SIZE_MAX) return NULL;
  mi_theap_t* const theap = _mi_theap_cached();
  return pmi_theap_is_of(theap, heap) ? pmi_theap_malloc_medium(theap, size, zero) : NULL;
}

/* -- a heap's OS pages at its destruction ---------------------------------------------------------------------------
 * v3.4.3's mi_heap_destroy frees the theaps of the heap (which leaves the pages in their queues where they are) and
 * then the heap's pages as _mi_heap_visit_blocks finds them: arena pages through the arenas' page bitmaps, OS pages
 * only from the list of abandoned ones. A page that mimalloc took from the OS and that is still in a queue of a live
 * thread's theap is then freed by nobody. Such pages come from blocks aligned above 64 KiB (a page of their own) that
 * another thread freed (the page waits in its owner's queue for the owner to collect it), and, with the option
 * disallow_arena_alloc or no address space left for an arena, from every emptied page kept for reuse (retired).
 * tests/children/close_leaves_nothing_mapped.py: 30 heaps of the first kind kept 41 MiB of address space, 60 of the
 * second (used by two threads) 556 MiB. Two reviews of the medium path's walk found them (2026-12-06).
 * Called by pmi_heap_try_release just before mi_heap_destroy, with nothing alive in the heap, under the world lock and
 * the exit lock: no thread can allocate from the heap, free into it, walk it, or exit and collect its theap meanwhile,
 * so the owners' queues hold still. Frees each OS page in the queues of every theap of `heap` once its blocks, the
 * ones other threads freed included, are collected and all free (as _mi_page_free, with the heap's statistics rather
 * than the owning thread's: this is not that thread). A page with a block still counted in use is left to mimalloc. */
void pmi_heap_free_os_pages(mi_heap_t* heap);
void pmi_heap_free_os_pages(mi_heap_t* heap) {
  mi_lock(&heap->theaps_lock) {
    for (mi_theap_t* theap = heap->theaps; theap != NULL; theap = theap->hnext) {
      for (size_t bin = 0; bin < MI_BIN_COUNT; bin++) {
        mi_page_queue_t* const pq = &theap->pages[bin];
        for (mi_page_t* page = pq->first, *next = NULL; page != NULL; page = next) {
          next = page->next;
          if (page->memid.memkind == MI_MEM_ARENA) continue;
          _mi_page_free_collect(page, true);
          if (!mi_page_all_free(page)) continue;
          mi_page_set_has_interior_pointers(page, false);
          mi_page_queue_remove(pq, page);
          mi_page_set_theap(page, NULL);
          _mi_arenas_page_free(page, NULL);
        }
      }
    }
  }
}

/* -- the medium path against mimalloc's own: a differential walk (for tests) --------------------------------------
 * pmi_theap_malloc_medium repeats steps of mimalloc's generic allocation, so a change on either side (an upgrade of
 * mimalloc, a mend here) could make the two disagree without any test of the path's results noticing: a page left in
 * the wrong queue, a retire mark kept, a count off by one. Here two new heaps of this thread take the same random walk
 * over blocks of 64 bytes to 600 KB, one with the medium path first (mimalloc's path where it returns NULL, as in
 * pmi_heap_alloc_slow), the other through mi_heap_malloc alone; after every step the two theaps' page queues must read
 * the same, page by page (pmi_walk_describe); a calloc's block must read zero (every 64th byte and the last), and every
 * block its fill byte (first, middle and last) when it is freed. Their random streams start equal (secure builds
 * extend pages and shuffle free lists at random), and neither abandons full pages: a fresh page may be an abandoned
 * page reclaimed from the arena, the first one found by address, and the two heaps' pages lie at different addresses
 * (a walk of seed 6 diverged there, in both paths alike). Full pages go to the theap's full queue instead, so both
 * walks reclaim nothing. Returns 0, or the step (from 1) where they first differ, with both descriptions' first
 * differing line in `report`; -1 if memory ran out or a page came from the OS rather than an arena (said in
 * `report`). `*medium_blocks` counts the blocks the medium path gave out, `*full_moves` the pages it took out of their
 * queue (filled above MI_SMALL_MAX_OBJ_SIZE). Python's heap's own policy (full pages abandoned, an emptied first page
 * kept) is not walked here; tests/children/allocator_page_queues_walk.py walks it. Runs with no other pymimalloc call
 * in flight in the process (a child's tests). */
static uint64_t pmi_walk_random(uint64_t* state) {  /* splitmix64 */
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct { char* text; size_t length, room; } pmi_walk_text_t;

static void pmi_walk_print(pmi_walk_text_t* out, const char* format, ...) __attribute__((format(printf, 2, 3)));
static void pmi_walk_print(pmi_walk_text_t* out, const char* format, ...) {
  if (out->text == NULL) return;
  va_list args;
  va_start(args, format);
  const int n = vsnprintf(out->text + out->length, out->room - out->length, format, args);
  va_end(args);
  if (n > 0) out->length += ((size_t)n < out->room - out->length ? (size_t)n : out->room - out->length - 1);
}

static size_t pmi_walk_list_length(const mi_page_t* page, const mi_block_t* block) {
  size_t n = 0;
  for (; block != NULL && n <= page->reserved; block = mi_block_next(page, block)) n++;
  return n;
}

/* one line per page, in queue order: what the comparison reads of a theap */
static void pmi_walk_describe(const mi_theap_t* theap, pmi_walk_text_t* out) {
  out->length = 0;
  if (out->text != NULL) out->text[0] = 0;
  pmi_walk_print(out, "generic count %ld, retired bins %zu-%zu, pages %zu, full-queue bytes %zu\n",
                 theap->generic_count, theap->page_retired_min, theap->page_retired_max, theap->page_count,
                 theap->pages_full_size);
  for (size_t bin = 0; bin < MI_BIN_COUNT; bin++) {
    size_t position = 0;
    for (const mi_page_t* page = theap->pages[bin].first; page != NULL; page = page->next, position++) {
      pmi_walk_print(out, "bin %zu page %zu: block %zu, used %u, capacity %u, reserved %u, free %zu, local free %zu, "
                     "retire %u, in full %d\n", bin, position, mi_page_block_size(page), page->used, page->capacity,
                     page->reserved, pmi_walk_list_length(page, page->free),
                     pmi_walk_list_length(page, page->local_free), page->retire_expire, (int)mi_page_is_in_full(page));
    }
  }
}

typedef struct { unsigned char* a; unsigned char* b; size_t size; unsigned char fill; } pmi_walk_block_t;

static bool pmi_walk_block_holds(const unsigned char* p, size_t size, unsigned char fill) {
  return p[0] == fill && p[size / 2] == fill && p[size - 1] == fill;
}
static bool pmi_walk_block_zero(const unsigned char* p, size_t size) {
  for (size_t i = 0; i < size; i += 64) if (p[i] != 0) return false;
  return p[size - 1] == 0;
}

long pmi_medium_path_walk(uint64_t seed, size_t steps, size_t* medium_blocks, size_t* full_moves, char* report,
                          size_t report_size);
long pmi_medium_path_walk(uint64_t seed, size_t steps, size_t* medium_blocks, size_t* full_moves, char* report,
                          size_t report_size) {
  static const size_t palette[] = {64, 700, 1025, 1500, 3000, 4096, 6000, 8192, 10240, 10241, 12288, 16000, 24000,
                                   40000, 65536, 70000, 131072, 200000, 400000, 524000, 600000};
  enum { SLOTS = 2048, SIZES = 5 };
  const size_t most_bytes = 24 * 1024 * 1024;  /* each heap's blocks at once */
  *medium_blocks = 0;
  *full_moves = 0;
  if (report_size > 0) report[0] = 0;
  long result = -1;
  pmi_walk_block_t* const held = calloc(SLOTS, sizeof(pmi_walk_block_t));
  pmi_walk_text_t here = {malloc(1 << 20), 0, 1 << 20}, there = {malloc(1 << 20), 0, 1 << 20};
  pmi_world_enter();  /* mi_heap_new allocates in the main heap (pmi_heap_new_unwrapped) */
  mi_heap_t* const heap_a = mi_heap_new();
  mi_heap_t* const heap_b = mi_heap_new();
  pmi_world_leave();
  size_t count = 0, bytes = 0;
  if (held == NULL || here.text == NULL || there.text == NULL || heap_a == NULL || heap_b == NULL) goto done;
  mi_free(mi_heap_malloc(heap_a, 8));  /* each heap's theap of this thread */
  mi_free(mi_heap_malloc(heap_b, 8));
  mi_theap_t* const theap_a = _mi_heap_theap_peek(heap_a);
  mi_theap_t* const theap_b = _mi_heap_theap_peek(heap_b);
  if (theap_a == NULL || theap_b == NULL) goto done;
  theap_a->random = theap_b->random;
  theap_a->allow_page_abandon = theap_b->allow_page_abandon = false;  /* full pages to the full queue (above) */
  uint64_t state = seed;
  size_t sizes[SIZES];
  for (size_t i = 0; i < SIZES; i++) {
    sizes[i] = palette[pmi_walk_random(&state) % (sizeof(palette) / sizeof(palette[0]))];
  }
  result = 0;
  for (size_t step = 1; step <= steps && result == 0; step++) {
    const unsigned op = (unsigned)(pmi_walk_random(&state) % 100);
    const size_t times = 1 + (size_t)(pmi_walk_random(&state) % 20);
    const char* what = "";
    if (op < 45 || (op < 80 && count == 0)) {  /* allocate */
      const size_t size = sizes[pmi_walk_random(&state) % SIZES];
      const bool zero = (pmi_walk_random(&state) % 4 == 0);
      what = zero ? "calloc" : "malloc";
      for (size_t i = 0; i < times && count < SLOTS && bytes + size <= most_bytes; i++) {
        mi_page_queue_t* const pq = mi_page_queue(theap_a, size + MI_PADDING_SIZE);
        const mi_page_t* const first = pq->first;
        /* as pmi_heap_malloc_medium: blocks above the fast path's sizes */
        unsigned char* a = size > MI_SMALL_SIZE_MAX ? pmi_theap_malloc_medium(theap_a, size, zero) : NULL;
        const bool medium = (a != NULL);
        if (medium) {
          ++*medium_blocks;
          if (pq->first != first) ++*full_moves;
        }
        else {
          a = zero ? mi_heap_zalloc(heap_a, size) : mi_heap_malloc(heap_a, size);
        }
        unsigned char* const b = zero ? mi_heap_zalloc(heap_b, size) : mi_heap_malloc(heap_b, size);
        if (a == NULL || b == NULL) { mi_free(a); mi_free(b); result = -1; break; }
        if (_mi_ptr_page(a)->memid.memkind != MI_MEM_ARENA || _mi_ptr_page(b)->memid.memkind != MI_MEM_ARENA) {
          /* no arena could serve a page (an address-space limit): an OS page keeps its page record in front of its
             blocks and holds fewer, so the two heaps' queues would differ without the medium path doing anything */
          snprintf(report, report_size, "step %zu: mimalloc took a page from the OS (no arena had room): the walk "
                   "compares arena pages only", step);
          mi_free(a); mi_free(b);
          result = -1;
          break;
        }
        if (zero && (!pmi_walk_block_zero(a, size) || !pmi_walk_block_zero(b, size))) {
          snprintf(report, report_size, "step %zu: a calloc of %zu bytes was not zeroed (%s)", step, size,
                   !pmi_walk_block_zero(b, size) ? "mimalloc's path" : medium ? "the medium path" :
                   "mimalloc's path, after the medium path declined");
          result = (long)step;
          mi_free(a); mi_free(b);
          break;
        }
        const unsigned char fill = (unsigned char)(1 + pmi_walk_random(&state) % 255);
        memset(a, fill, size);
        memset(b, fill, size);
        held[count++] = (pmi_walk_block_t){a, b, size, fill};
        bytes += size;
      }
    }
    else {
      size_t first = 0, n = 0;
      if (op < 80) {  /* free the newest, or a run from anywhere */
        what = "free";
        n = times < count ? times : count;
        first = (pmi_walk_random(&state) % 2 == 0) ? count - n : (size_t)(pmi_walk_random(&state) % (count - n + 1));
      }
      else if (op < 90) {  /* free every block of one size: pages empty, retire, go back */
        what = "free a size";
        const size_t size = sizes[pmi_walk_random(&state) % SIZES];
        size_t kept = 0;
        for (size_t i = 0; i < count; i++) {
          if (held[i].size == size) {
            if (!pmi_walk_block_holds(held[i].a, size, held[i].fill) ||
                !pmi_walk_block_holds(held[i].b, size, held[i].fill)) {
              snprintf(report, report_size, "step %zu: a block of %zu bytes lost its fill", step, size);
              result = (long)step;
            }
            mi_free(held[i].a); mi_free(held[i].b);
            bytes -= size;
          }
          else held[kept++] = held[i];
        }
        count = kept;
      }
      else {  /* collect, forced one time in four */
        const bool force = (pmi_walk_random(&state) % 4 == 0);
        what = force ? "forced collect" : "collect";
        mi_heap_collect(heap_a, force);
        mi_heap_collect(heap_b, force);
      }
      for (size_t i = first; i < first + n; i++) {
        if (!pmi_walk_block_holds(held[i].a, held[i].size, held[i].fill) ||
            !pmi_walk_block_holds(held[i].b, held[i].size, held[i].fill)) {
          snprintf(report, report_size, "step %zu: a block of %zu bytes lost its fill", step, held[i].size);
          result = (long)step;
        }
        mi_free(held[i].a); mi_free(held[i].b);
        bytes -= held[i].size;
      }
      if (n > 0) { memmove(held + first, held + first + n, (count - first - n) * sizeof(held[0])); count -= n; }
    }
    if (result != 0) break;
    pmi_walk_describe(theap_a, &here);
    pmi_walk_describe(theap_b, &there);
    if (strcmp(here.text, there.text) != 0) {
      size_t line = 0;  /* the first line that differs */
      for (size_t i = 0; here.text[i] == there.text[i]; i++) if (here.text[i] == '\n') line = i + 1;
      const char* end_a = strchr(here.text + line, '\n');
      const char* end_b = strchr(there.text + line, '\n');
      snprintf(report, report_size, "step %zu (%s): medium path: %.*s; mimalloc's path: %.*s", step, what,
               (int)(end_a ? (size_t)(end_a - here.text) - line : strlen(here.text + line)), here.text + line,
               (int)(end_b ? (size_t)(end_b - there.text) - line : strlen(there.text + line)), there.text + line);
      result = (long)step;
    }
  }
done:
  for (size_t i = 0; i < count; i++) { mi_free(held[i].a); mi_free(held[i].b); }
  /* nothing is alive in them, and only this thread, which lives on, used them (as pmi_heap_try_release) */
  pmi_world_enter();
  if (heap_a != NULL) { pmi_heap_free_os_pages(heap_a); mi_heap_destroy(heap_a); }
  if (heap_b != NULL) { pmi_heap_free_os_pages(heap_b); mi_heap_destroy(heap_b); }
  pmi_world_leave();
  free(held);
  free(here.text);
  free(there.text);
  return result;
}

/* For the glue's counted blocks (pmi_counted_alloc in pmi_heap.c: Python objects, numpy data): mi_heap_malloc,
 * and the size the glue counts for the block (pmi_page_block_usable, as every count in and out of the glue) in
 * `*counted`, read from the page the fast path took
 * the block from rather than found again in the page map. A block mimalloc's fast path hands out is the head of
 * the free list of the theap's direct page for its size, so when that list is not empty the page is known
 * before the call. Guarded builds may divert any small block to a guard page: they take the slow path.
 * pmi_fast_malloc_small_counted is that fast path alone: NULL, with nothing done, where it does not apply. */
PMI_HOOK_INLINE void* pmi_fast_malloc_small_counted(mi_heap_t* heap, size_t size, size_t* counted) {
#if !MI_GUARDED
  mi_theap_t* const theap = _mi_theap_cached();
  if mi_likely(pmi_theap_is_of(theap, heap) && size <= MI_SMALL_SIZE_MAX) {
#if MI_PADDING
    const size_t asked = (size == 0 ? sizeof(void*) : size) + MI_PADDING_SIZE;  /* as the fast path does */
#else
    const size_t asked = size;
#endif
    mi_page_t* const page = _mi_theap_get_free_small_page(theap, asked);
    if mi_likely(page->free != NULL) {
      void* const p = mi_theap_malloc_small_zero_nonnull(theap, size, false, NULL);
      *counted = pmi_page_block_usable(page, p);
      return p;
    }
  }
#else
  (void)heap; (void)size; (void)counted;
#endif
  return NULL;
}
PMI_HOOK_INLINE void* pmi_fast_malloc_counted(mi_heap_t* heap, size_t size, size_t* counted) {
  void* const p = pmi_fast_malloc_small_counted(heap, size, counted);
  return p != NULL ? p : pmi_heap_malloc_counted_slow(heap, size, counted);
}
mi_decl_noinline void* pmi_heap_malloc_counted_slow(mi_heap_t* heap, size_t size, size_t* counted) {
  void* p = pmi_heap_malloc_medium(heap, size, false);
  if (p == NULL) p = mi_heap_malloc(heap, size);
  *counted = (p != NULL ? pmi_page_block_usable(_mi_ptr_page(p), p) : 0);
  return p;
}
/* everything of pmi_fast_malloc but its fast path, in a function of its own: nothing the fast path holds
 * is needed after a call, so the hook's malloc saves no register and keeps no frame. A block above the fast path's
 * sizes tries the first page of its queue first (above). */
static inline __attribute__((always_inline)) void* pmi_heap_alloc_slow(mi_heap_t* heap, size_t size, bool zero) {
  void* const p = pmi_heap_malloc_medium(heap, size, zero);
  if mi_likely(p != NULL) return p;
  pmi_theap_ensure(heap);
  return zero ? mi_heap_zalloc(heap, size) : mi_heap_malloc(heap, size);
}
mi_decl_noinline void* pmi_heap_malloc_slow(mi_heap_t* heap, size_t size) {
  return pmi_heap_alloc_slow(heap, size, false);
}
/* mi_heap_zalloc likewise (the hook's calloc, beyond its fast path) */
void* pmi_heap_zalloc_slow(mi_heap_t* heap, size_t size) { return pmi_heap_alloc_slow(heap, size, true); }

/* mi_free(p), and if that gave p's page back to its arena (a block of more than MI_LARGE_MAX_OBJ_SIZE bytes
 * has a page of its own, and this thread's free of it frees the page at once), the page's memory back to the
 * OS now rather than after mimalloc's purge delay (purge_delay x arena_purge_mult: 1 s by default). For
 * blocks the allocator hook moves to grow them: the C library grows such blocks in place (mremap), so each
 * copy left behind would otherwise stay resident. Nothing is purged if the options forbid purging, if the
 * arena is pinned, or if another thread took the slices meanwhile (claiming them fails). */
void pmi_free_purge_now(void* p) {
  mi_page_t* const page = _mi_ptr_page(p);
  mi_arena_t* arena = NULL;
  size_t slice_index = 0;
  size_t slice_count = 0;
  if (mi_page_is_singleton(page) && page->memid.memkind == MI_MEM_ARENA) {
    arena = mi_arena_from_memid(page->memid, &slice_index, &slice_count);
  }
  mi_free(p);
  if (arena == NULL || arena->memid.is_pinned || mi_arena_purge_delay() < 0) return;
  while (slice_count > 0) {  /* a claim cannot cross a chunk of the arena's bitmap: purge chunk by chunk */
    const size_t in_chunk = MI_BCHUNK_BITS - slice_index % MI_BCHUNK_BITS;
    const size_t n = slice_count < in_chunk ? slice_count : in_chunk;
    if (n == MI_BCHUNK_BITS) { /* mi_arena_try_purge_range takes less than a whole chunk */
      (void)mi_arena_try_purge_range(arena, slice_index, n / 2);
      (void)mi_arena_try_purge_range(arena, slice_index + n / 2, n / 2);
    }
    else {
      (void)mi_arena_try_purge_range(arena, slice_index, n);
    }
    slice_index += n;
    slice_count -= n;
  }
}

/* A thread's first allocation from a heap makes its theap, and may grow the thread's table of thread-local
 * slots with mi_rezalloc, in mimalloc's main heap (threadlocal.c). Glue calls are bracketed by their heap,
 * so a walk of the main heap, which waits for every bracket, never runs beside that. The hook's MEM and OBJ
 * calls into Python's heap are not bracketed: their first use in a thread takes the world bracket instead,
 * once (RAW calls hold it already). */
void pmi_theap_ensure_slow(mi_heap_t* heap);
mi_decl_noinline void pmi_theap_ensure_slow(mi_heap_t* heap) {
  if (pmi_world_held()) { mi_free(mi_heap_malloc(heap, 16)); return; }
  pmi_world_enter();
  mi_free(mi_heap_malloc(heap, 16));
  pmi_world_leave();
}

/* -- the first chunk of an arena --------------------------------------------------------------------------
 * v3.4.3 finds free slices for a page chunk by chunk (32 MiB each), and looks first at chunks that have a size
 * bin (the bin of the page that took a chunk's slice 0), then at chunks that have none. An arena's chunk 0
 * starts with the arena's own metadata, so no page ever takes its slice 0 and it never gets a bin: as soon as
 * another chunk has one, that chunk is searched before chunk 0. Memory freed in chunk 0 then waits for the
 * purge delay (1 s) while new pages are committed in chunk 1: pyperformance's float worker peaked 13 MiB above
 * pymalloc's with install() (its second loop reused almost nothing of its first), against 2 MiB with one loop.
 * Giving chunk 0 the small bin, which every page size searches first, makes freed memory there the first
 * choice again. Called at import, once pmi_arena_first (below) reserved mimalloc's first arena, and after each
 * Arena is reserved (a heap in it has the same two chunks); arenas mimalloc maps later by itself keep mimalloc's
 * behaviour. Idempotent: a chunk that has a bin keeps it. */
void pmi_arenas_bin_first_chunk(void);
void pmi_arenas_bin_first_chunk(void) {
  mi_subproc_t* subproc = _mi_subproc_main();
  const size_t count = mi_arenas_get_count(subproc);
  for (size_t i = 0; i < count; i++) {
    mi_arena_t* arena = mi_arena_from_index(subproc, i);
    if (arena == NULL || mi_bbitmap_chunk_count(arena->slices_free) == 0) continue;
    if (mi_bbitmap_debug_get_bin(arena->slices_free->chunkmap_bins, 0) == MI_CBIN_NONE) {
      mi_bbitmap_set_chunk_bin(arena->slices_free, 0, MI_CBIN_SMALL);
    }
  }
}

/* Set `option` to pymimalloc's `value` unless the environment gave one (MIMALLOC_<NAME>, which mi_option_get reads
   first if it was not read yet): the one way pymimalloc changes a default of mimalloc's. */
static void pmi_option_default(mi_option_t option, long value) {
  const long asked = mi_option_get(option);
  (void)asked;
  if (mi_options[option].init != MI_OPTION_INITIALIZED) mi_option_set(option, value);
}

/* -- transparent huge pages ----------------------------------------------------------------------------------
 * v3.4.3 asks the kernel for transparent huge pages on every arena it maps (madvise MADV_HUGEPAGE; option
 * allow_thp, on by default). Under the common THP setting "madvise", each first touch of an arena then faults
 * in 2 MiB at once: a process that imported pymimalloc started 6 MiB bigger, and one that called install()
 * 16 MiB bigger. Turning the option off in the environment (MIMALLOC_ALLOW_THP=0) would make
 * mimalloc disable THP for the whole process as it starts (prctl PR_SET_THP_DISABLE: the C library's
 * malloc, numpy, every other library), a change a Python program did not ask for. So pymimalloc sets the
 * option to 0 itself, after mimalloc has started (its prctl decision is behind it) and before the first
 * arena is mapped (pmi_init, at import): mimalloc then just does not ask, and nothing else in the process
 * changes. A value given in the environment stands: MIMALLOC_ALLOW_THP=1 asks for huge pages again (and
 * options["allow_thp"] = 1 does for arenas mapped after it). */

/* -- the first arena's size ----------------------------------------------------------------------------------
 * v3.4.3 reserves its first arena 1 GiB at a time (option arena_reserve) and commits its bitmaps for all of it
 * at once: about 0.2 MiB resident before a block is handed out, a tenth of what a pyperformance worker's peak
 * RSS keeps above pymalloc's under install() (3.13, median of 3 workers, above pymalloc's: json_loads +2.2 MiB
 * with 1 GiB, +1.9 with 256 MiB; richards +2.3, +1.9; raytrace +2.5, +2.0). mimalloc doubles the reservation
 * after every eight arenas (up to 16 GiB, 160 arenas), so a program that grows past the first arenas soon
 * reserves in large steps again. pymimalloc sets 64 MiB where the environment gave no value
 * (MIMALLOC_ARENA_RESERVE stands), at the same moment as allow_thp above: after mimalloc started, before its
 * first arena. It set 256 MiB until 2026-12-05: 64 MiB took another 0.1-0.2 MiB off five of eight 3.11 workers
 * (median of 5), and the other three and their CPU time stayed level. */

/* -- the purge delay, left at mimalloc's 1 s ------------------------------------------------------------------
 * v2, which CPython 3.13's built-in mimalloc runs, purges freed pages after 10 ms. A shorter delay than v3's 1 s
 * lowered the peak RSS of pyperformance workers under install() by 0.1 to 0.2 MiB (3.11, 100 ms) and cost more than
 * it saved: float's loop took 2-3% more CPU time with 100 ms and 10% more with 10 ms (3.4 times the page faults), a
 * Heap's batches of 1600 blocks of 64 KiB-1 MiB 17-22% more time with 100 ms, and the C-loop kernels of a Heap 2.4%
 * more in the geometric mean. docs/benchmarks.md has the runs. */

/* mimalloc's first arena, reserved now as mimalloc reserves it at its first allocation that finds no arena (the
 * same size, from arena_reserve, and the same lock), so that pmi_init can give its chunk 0 a bin (above) whichever
 * heap allocates first. Large OS pages as for mimalloc's metadata, whose first page mapped this arena before
 * pymimalloc kept its bookkeeping in the C library's heap (pmi_heap.c): allowed unless MI_SECURE, where an arena of
 * large pages would not suit every caller. Nothing if an arena exists, or if mimalloc may not ask the OS. */
void pmi_arena_first(void);
void pmi_arena_first(void) {
  mi_subproc_t* const subproc = _mi_subproc_main();
  if (mi_arenas_get_count(subproc) > 0 || mi_option_is_enabled(mi_option_disallow_os_alloc)) return;
  mi_lock(&subproc->arena_reserve_lock) {
    if (mi_arenas_get_count(subproc) == 0) {
      mi_arena_id_t arena_id = _mi_arena_id_none();
      (void)mi_arena_reserve(subproc, MI_ARENA_SLICE_SIZE, MI_SECURE == 0 /* as mi_meta_page_zalloc */, &arena_id);
    }
  }
}

/* Whether mimalloc can never get memory: it may not ask the OS (disallow_os_alloc) and holds no arena reserved
 * (reserve_os_memory, reserve_huge_os_pages). pmi_init refuses to start then, so that the import says why. */
bool pmi_starved(void);
bool pmi_starved(void) {
  return mi_option_is_enabled(mi_option_disallow_os_alloc) && mi_arenas_get_count(_mi_subproc_main()) == 0;
}

/* pymimalloc's own defaults, each explained above: pmi_init sets them once, before mimalloc maps its first arena. */
void pmi_option_defaults(void);
void pmi_option_defaults(void) {
  pmi_option_default(mi_option_allow_thp, 0);
  pmi_option_default(mi_option_arena_reserve, 64 * 1024);  /* KiB */
}
