/* The upstream side of benchmarks/build_parity.py: runs pymimalloc's benchmark kernels (csrc/pmi_bench.c,
 * compiled with PMI_BENCH_STANDALONE) linked against mimalloc as upstream's own CMake Release build
 * makes it. Reads "pattern allocator size param ops" lines on stdin, prints ns/op per line. */
#include <stdint.h>
#include <stdio.h>
#include <mimalloc.h>

typedef struct pmi_heap_s pmi_heap_t;
#include "pmi_bench.h"

int main(void) {
    mi_heap_t* heap = mi_heap_new();
    int pattern, allocator;
    size_t size, param, ops;
    while (scanf("%d %d %zu %zu %zu", &pattern, &allocator, &size, &param, &ops) == 5) {
        const double ns = pmi_bench_run(pattern, allocator, heap, size, param, ops, 1000);
        printf("%.3f\n", ns);
        fflush(stdout);
    }
    mi_heap_delete(heap);
    return 0;
}
