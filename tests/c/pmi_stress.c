/* A multi-threaded stress test of mimalloc's heaps in the shape of mimalloc's test-stress, written for
 * pymimalloc and run by tests/test_reliability.py: each round starts `threads` new threads; they allocate
 * from a set of shared heaps, hand blocks to each other through a shared transfer array, free blocks other
 * threads allocated, and check every block's contents (a pattern derived from its address) before freeing
 * it. Heaps are replaced as rounds go on and deleted (mi_heap_delete) a few rounds later, while blocks from
 * them are still live.
 *
 * Compiled against csrc/pmi_mimalloc.c (the module's single unit of mimalloc) with the defines the module
 * was built with, as its own program: it uses raw mimalloc heaps, which the module never hands out.
 * Usage: pmi_stress THREADS ROUNDS ITERATIONS SEED. Prints the number of corrupted blocks found and exits 0
 * when there are none; exits 1 on corruption, 2 if out of memory or on bad arguments. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pmi_glue_stubs.h"
#include "pmi_mimalloc.c"

#define PMI_HEAPS      4       /* shared heaps in use at any time */
#define PMI_KEEP       3       /* rounds a replaced heap lives on before it is deleted */
#define PMI_TRANSFER   1024    /* blocks in flight between threads */
#define PMI_OWN        256     /* blocks each thread holds */

typedef struct pmi_stress_s {
    _Atomic(mi_heap_t*) heaps[PMI_HEAPS];
    _Atomic(uintptr_t*) transfer[PMI_TRANSFER];
    atomic_long corrupt;
    atomic_int oom;
    int iterations;
} pmi_stress_t;

typedef struct pmi_worker_s { pmi_stress_t* shared; uint64_t seed; } pmi_worker_t;

static inline uint64_t pmi_rnd(uint64_t* s) {
    uint64_t x = *s; x ^= x >> 12; x ^= x << 25; x ^= x >> 27; *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A block is an array of words: [count, cookie(address) ...]. */
static uintptr_t* pmi_block_new(mi_heap_t* heap, uint64_t* rng) {
    size_t words = 1 + pmi_rnd(rng) % (pmi_rnd(rng) % 100 == 0 ? 20000 : 64);
    uintptr_t* p = (uintptr_t*)mi_heap_malloc(heap, words * sizeof(uintptr_t));
    if (p == NULL) return NULL;
    const uintptr_t cookie = ((uintptr_t)p ^ 0x5A5A5A5A5A5A5A5AULL);
    p[0] = words;
    for (size_t i = 1; i < words; i++) p[i] = cookie + i;
    return p;
}

static void pmi_block_check_free(pmi_stress_t* s, uintptr_t* p) {
    if (p == NULL) return;
    const uintptr_t cookie = ((uintptr_t)p ^ 0x5A5A5A5A5A5A5A5AULL);
    const size_t words = p[0];
    bool ok = (words >= 1 && words <= 20000);
    for (size_t i = 1; ok && i < words; i++) ok = (p[i] == cookie + i);
    if (!ok) atomic_fetch_add(&s->corrupt, 1);
    mi_free(p);
}

static void* pmi_stress_worker(void* arg) {
    pmi_worker_t* w = (pmi_worker_t*)arg;
    pmi_stress_t* s = w->shared;
    uint64_t rng = w->seed | 1;
    uintptr_t* own[PMI_OWN] = { 0 };
    for (int i = 0; i < s->iterations; i++) {
        mi_heap_t* heap = atomic_load(&s->heaps[pmi_rnd(&rng) % PMI_HEAPS]);
        const size_t slot = pmi_rnd(&rng) % PMI_OWN;
        pmi_block_check_free(s, own[slot]);
        own[slot] = pmi_block_new(heap, &rng);
        if (own[slot] == NULL) { atomic_store(&s->oom, 1); break; }
        if (pmi_rnd(&rng) % 4 == 0) {  /* hand a block to whoever comes next, take theirs */
            const size_t t = pmi_rnd(&rng) % PMI_TRANSFER;
            uintptr_t* theirs = atomic_exchange(&s->transfer[t], own[slot]);
            own[slot] = theirs;
        }
    }
    for (size_t i = 0; i < PMI_OWN; i++) {  /* leave half for the next round's threads */
        if (own[i] != NULL && (i % 2 == 0)) pmi_block_check_free(s, own[i]);
        else if (own[i] != NULL) {
            uintptr_t* theirs = atomic_exchange(&s->transfer[pmi_rnd(&rng) % PMI_TRANSFER], own[i]);
            pmi_block_check_free(s, theirs);
        }
    }
    return NULL;
}

static long pmi_stress_rounds(int threads, int rounds, int iterations, uint64_t seed) {
    if (threads < 1 || threads > 64 || rounds < 1 || iterations < 1) return -1;
    pmi_stress_t* s = (pmi_stress_t*)calloc(1, sizeof(pmi_stress_t));
    mi_heap_t* retired[PMI_KEEP] = { 0 };
    pthread_t* tids = (pthread_t*)calloc((size_t)threads, sizeof(pthread_t));
    pmi_worker_t* workers = (pmi_worker_t*)calloc((size_t)threads, sizeof(pmi_worker_t));
    if (s == NULL || tids == NULL || workers == NULL) { free(s); free(tids); free(workers); return -1; }
    s->iterations = iterations;
    for (int h = 0; h < PMI_HEAPS; h++) atomic_store(&s->heaps[h], mi_heap_new());
    uint64_t rng = seed | 1;
    for (int r = 0; r < rounds && !atomic_load(&s->oom); r++) {
        for (int t = 0; t < threads; t++) {
            workers[t].shared = s;
            workers[t].seed = pmi_rnd(&rng);
            if (pthread_create(&tids[t], NULL, pmi_stress_worker, &workers[t]) != 0) { atomic_store(&s->oom, 1); threads = t; break; }
        }
        for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
        /* replace one shared heap; delete the one retired PMI_KEEP rounds ago (its live blocks move on) */
        const int h = r % PMI_HEAPS;
        mi_heap_t* old = atomic_exchange(&s->heaps[h], mi_heap_new());
        if (retired[r % PMI_KEEP] != NULL) mi_heap_delete(retired[r % PMI_KEEP]);
        retired[r % PMI_KEEP] = old;
    }
    for (size_t i = 0; i < PMI_TRANSFER; i++) pmi_block_check_free(s, atomic_load(&s->transfer[i]));
    for (int k = 0; k < PMI_KEEP; k++) if (retired[k] != NULL) mi_heap_delete(retired[k]);
    for (int h = 0; h < PMI_HEAPS; h++) mi_heap_delete(atomic_load(&s->heaps[h]));
    const long result = atomic_load(&s->oom) ? -1 : atomic_load(&s->corrupt);
    free(s); free(tids); free(workers);
    return result;
}

int main(int argc, char** argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s THREADS ROUNDS ITERATIONS SEED\n", argv[0]); return 2; }
    const long corrupt = pmi_stress_rounds(atoi(argv[1]), atoi(argv[2]), atoi(argv[3]), strtoull(argv[4], NULL, 10));
    if (corrupt < 0) { fprintf(stderr, "out of memory, or bad arguments\n"); return 2; }
    printf("%ld corrupted blocks\n", corrupt);
    return corrupt == 0 ? 0 : 1;
}
