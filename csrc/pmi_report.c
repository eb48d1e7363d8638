/* Reports from mimalloc as text; see pmi_report.h. */
#include <string.h>
#include <mimalloc.h>
#include <mimalloc-stats.h>
#include "pmi_heap.h"
#include "pmi_internal.h"

typedef struct pmi_text_s { char* buf; size_t len; size_t cap; bool failed; } pmi_text_t;

/* mimalloc's output callback: append to a growing buffer (pmi_meta_realloc; freed by pmi_text_free). */
static void pmi_append(const char* msg, void* arg) {
    pmi_text_t* t = (pmi_text_t*)arg;
    const size_t n = strlen(msg);
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->cap == 0 ? 1024 : t->cap);
        while (t->len + n + 1 > cap) cap *= 2;
        char* bigger = (char*)pmi_meta_realloc(t->buf, cap);
        if (bigger == NULL) { t->failed = true; return; }
        t->buf = bigger;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, msg, n + 1);
    t->len += n;
}

static char* pmi_finish(pmi_text_t* t) {
    if (t->failed) { pmi_meta_free(t->buf); return NULL; }
    if (t->buf == NULL) { t->buf = (char*)pmi_meta_realloc(NULL, 1); if (t->buf) t->buf[0] = 0; }
    return t->buf;
}

char* pmi_options_text(void) {
    pmi_text_t t = { NULL, 0, 0, false };
    mi_options_print_out(&pmi_append, &t);
    return pmi_finish(&t);
}

char* pmi_stats_text(void) {
    pmi_text_t t = { NULL, 0, 0, false };
    mi_stats_print_out(&pmi_append, &t);
    return pmi_finish(&t);
}

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
            json = mi_stats_get_json(size, buf);
            pmi_world_leave();
        }
        else {
            if (pmi_heap_enter_read(h) != PMI_OK) { pmi_meta_free(buf); return NULL; }
            json = mi_heap_stats_get_json(pmi_heap_raw(h), size, buf);
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
