/* Regression test for a mimalloc v3.4.3 defect that pymimalloc works around (csrc/pmi_mimalloc.c,
   pmi_thread_locals_rezalloc), run by tests/test_reliability.py. It prints "clean" and exits 0 when the
   workaround holds, "STALE SLOT" and exits 1 when a thread is handed another (dead) thread's theap.

   Deterministic check of mimalloc v3.4.3's thread-local slot growth (src/threadlocal.c:90, mi_thread_locals_expand):
   the never-written slack of a thread's first 16-slot array (280 bytes asked, 320 usable) is copied into the
   32-slot array it grows into, so a stale {version, theap*} left by an earlier tenant of that block is read
   back as the theap of a live heap. Compiled against csrc/pmi_mimalloc.c (the glue's single TU of mimalloc).
   Build: cc -O1 -I<mi>/include -I<mi>/src -I<csrc> stale_tls_slot.c -lpthread */
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include "pmi_glue_stubs.h"
#include "pmi_mimalloc.c"

#define NH 24
#define NB 2000
static mi_heap_t* heaps[NH];
static int result = -1;

static void* victim(void* arg) {
  (void)arg;
  int target = -1, grow = -1, first = -1;
  for (int i = 0; i < NH; i++) {
    const size_t idx = heaps[i]->theap & 0xFFFF;
    if (idx == 18) target = i;
    if (idx == 16) grow = i;
    if (idx == 0) first = i;
  }
  if (target < 0 || grow < 0 || first < 0) { fprintf(stderr, "no heaps with slot 0/16/18\n"); return NULL; }
  static void* p[NB];
  for (int i = 0; i < NB; i++) p[i] = mi_malloc(300);           /* 320-byte bin, this thread's main theap */
  mi_theap_t* const fake = _mi_theap_default();                 /* a real theap, of the MAIN heap */
  for (int i = 0; i < NB; i++) {                                /* an earlier tenant's slot 18 */
    size_t* w = (size_t*)((uint8_t*)p[i] + 8 + 16 * 18);
    w[0] = heaps[target]->theap >> 16;                          /* the live key's version */
    w[1] = (size_t)fake;
  }
  for (int i = 0; i < NB; i++) mi_free(p[i]);
  /* use up the never-used blocks at the head of the free list, until a freed (planted) block comes back */
  for (int i = 0; i < NB; i++) {
    size_t* w = (size_t*)mi_malloc(300);
    if (w[(8 + 16 * 18) / 8 + 1] == (size_t)fake) { mi_free(w); break; }
  }
  (void)mi_heap_malloc(heaps[first], 16);    /* first array: mi_rezalloc(NULL, 280 bytes) */
  { size_t* w = (size_t*)((uint8_t*)mi_thread_locals + 8 + 16 * 18);
    fprintf(stderr, "first array %p count %zu usable %zu; bytes at slot 18: %zx %zx\n", (void*)mi_thread_locals, mi_thread_locals->count, mi_usable_size(mi_thread_locals), w[0], w[1]); }
  (void)mi_heap_malloc(heaps[grow], 16);     /* slot 16: grows it to 32 slots */
  void* const got = _mi_thread_local_get(heaps[target]->theap);
  void* const q = mi_heap_malloc(heaps[target], 16);
  printf("slot 18 before first use: %p (planted %p); mi_heap_malloc(heap 18) landed in %s\n", got, (void*)fake,
         mi_heap_of(q) == heaps[target] ? "heap 18" : mi_heap_of(q) == mi_heap_main() ? "the MAIN heap" : "another heap");
  result = (got != NULL || mi_heap_of(q) != heaps[target]);
  return NULL;
}

int main(void) {
  for (int i = 0; i < NH; i++) heaps[i] = mi_heap_new();
  pthread_t t;
  pthread_create(&t, NULL, victim, NULL);
  pthread_join(t, NULL);
  puts(result == 1 ? "STALE SLOT" : result == 0 ? "clean" : "inconclusive");
  return result == 1;
}
