/* Reports from mimalloc as text: options, statistics and process information.
 * Each text function returns a NUL-terminated string the caller frees with pmi_text_free (NULL when
 * out of memory).
 * No include guards: it is part of cffi's cdef (build_ffi.py), which takes only constant #defines. */

char* pmi_options_text(void);                 /* mi_options_print_out: "option '<name>': <value>" lines */
char* pmi_stats_text(void);                   /* mi_stats_print_out */
char* pmi_stats_json(void);                   /* mi_stats_get_json */
char* pmi_heap_stats_json(pmi_heap_t* heap);  /* mi_heap_stats_get_json; NULL if the heap is closed */
void  pmi_text_free(char* text);

