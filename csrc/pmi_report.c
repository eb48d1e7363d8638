/* Reports from mimalloc as text; see pmi_report.h. */
#include <string.h>
#include <mimalloc.h>
#include <mimalloc-stats.h>
#include "pmi_heap.h"
#include "pmi_internal.h"

typedef struct pmi_text_s { char* buf; size_t len; size_t cap; bool truncated; } pmi_text_t;

/* mimalloc's output callback: append to the buffer, which it never grows (it runs inside a world bracket, and
   brackets never nest: pmi_meta_realloc takes one); `truncated` if the text did not fit. */
static void pmi_append(const char* msg, void* arg) {
    pmi_text_t* t = (pmi_text_t*)arg;
    const size_t n = strlen(msg);
    if (t->truncated || t->len + n + 1 > t->cap) { t->truncated = true; return; }
    memcpy(t->buf + t->len, msg, n + 1);
    t->len += n;
}

/* The text `print` writes, in a buffer of the C library's heap (pmi_meta_realloc; freed by pmi_text_free), or NULL
   out of memory. `print` runs inside a world bracket, as every call that reads mimalloc's process-wide state: adding
   up the statistics holds mimalloc's lock of its heaps, and a fork that copied it held left the child waiting in its
   first Heap() for good (a review found it). Like the JSON below, the buffer is allocated first, and again bigger if
   the text did not fit. */
static char* pmi_text_of(void (*print)(mi_output_fun* out, void* arg)) {
    for (size_t cap = 16 * 1024; cap <= 64 * 1024 * 1024; cap *= 2) {
        pmi_text_t t = { (char*)pmi_meta_realloc(NULL, cap), 0, cap, false };
        if (t.buf == NULL) return NULL;
        t.buf[0] = 0;
        pmi_world_enter();
        print(&pmi_append, &t);
        pmi_world_leave();
        if (!t.truncated) return t.buf;
        pmi_meta_free(t.buf);
    }
    return NULL;
}

char* pmi_options_text(void) { return pmi_text_of(&mi_options_print_out); }
char* pmi_stats_text(void) { return pmi_text_of(&pmi_stats_print_out_all); }

/* mimalloc would allocate the JSON with mi_malloc, i.e. in the main heap, which may be frozen by a
   snapshot. So we hand it buffers from the C library's heap (pmi_meta_realloc). Brackets never nest
   (pmi_heap.h), so the buffer is allocated before the statistics are read. */
static char* pmi_json_into_buffer(pmi_heap_t* h) {
    for (size_t size = 16 * 1024; size <= 64 * 1024 * 1024; size *= 2) {
        char* buf = (char*)pmi_meta_realloc(NULL, size);
        if (buf == NULL) return NULL;
        char* json;
        if (h == NULL) {
            pmi_world_enter();
            json = pmi_stats_json_all(NULL, size, buf);
            pmi_world_leave();
        }
        else {
            if (pmi_heap_enter_read(h) != PMI_OK) { pmi_meta_free(buf); return NULL; }
            json = pmi_stats_json_all(pmi_heap_raw(h), size, buf);
            pmi_heap_leave_read(h);
        }
        if (json != NULL && strnlen(buf, size) < size - 1) return buf;
        pmi_meta_free(buf);  /* truncated: try a bigger buffer */
    }
    return NULL;
}

char* pmi_stats_json(void) { return pmi_json_into_buffer(NULL); }
char* pmi_heap_stats_json(pmi_heap_t* h) { return pmi_json_into_buffer(h); }
void  pmi_text_free(char* text) { pmi_meta_free(text); }
