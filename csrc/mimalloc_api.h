/* The part of mimalloc's public API that Python calls directly, declared for cffi.
 *
 * These are declarations only, written against mimalloc's documented API (include/mimalloc.h).
 * cffi checks each one against the real header when it compiles the module, so a mismatch is a
 * build error, not a crash. Everything that needs care (lifetimes, locking) goes through pmi_heap.h.
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines.
 */

#define MI_MALLOC_VERSION ...

typedef struct mi_heap_s mi_heap_t;

int    mi_version(void);
size_t mi_good_size(size_t size);
size_t mi_usable_size(const void* p);

/* Raw allocation, for benchmarks of the FFI itself and for tests (never used on user-visible memory). */
void*  mi_malloc(size_t size);
void*  mi_heap_malloc(mi_heap_t* heap, size_t size);
void   mi_free(void* p);
mi_heap_t* mi_heap_main(void);

/* Options, by their enum value (names come from mi_options_print_out; see pymimalloc/options.py). */
typedef int... mi_option_t;
long   mi_option_get(mi_option_t option);
void   mi_option_set(mi_option_t option, long value);

/* Statistics and process information. */
void   mi_stats_reset(void);
void   mi_process_info(size_t* elapsed_msecs, size_t* user_msecs, size_t* system_msecs, size_t* current_rss,
                       size_t* peak_rss, size_t* current_commit, size_t* peak_commit, size_t* page_faults);

/* Arenas (an arena id is an opaque pointer). */
size_t mi_arena_min_size(void);
void*  mi_arena_area(void* arena_id, size_t* size);
bool   mi_arena_contains(void* arena_id, const void* p);
