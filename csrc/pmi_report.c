/* Reports from mimalloc as text; see pmi_report.h. */
#include <string.h>
#include <mimalloc.h>
#include <mimalloc-stats.h>
#include "pmi_heap.h"

typedef struct pmi_text_s { char* buf; size_t len; size_t cap; bool failed; } pmi_text_t;

/* mimalloc's output callback: append to a growing buffer (in the main heap; freed by pmi_text_free). */
static void pmi_append(const char* msg, void* arg) {
    pmi_text_t* t = (pmi_text_t*)arg;
    const size_t n = strlen(msg);
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->cap == 0 ? 1024 : t->cap);
        while (t->len + n + 1 > cap) cap *= 2;
        char* bigger = (char*)mi_realloc(t->buf, cap);
        if (bigger == NULL) { t->failed = true; return; }
        t->buf = bigger;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, msg, n + 1);
    t->len += n;
}

static char* pmi_finish(pmi_text_t* t) {
    if (t->failed) { mi_free(t->buf); return NULL; }
    if (t->buf == NULL) { t->buf = (char*)mi_zalloc(1); }
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

char* pmi_stats_json(void) { return mi_stats_get_json(0, NULL); }
void  pmi_text_free(char* text) { mi_free(text); }
