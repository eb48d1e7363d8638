/* Shared between pymimalloc's C files only; not part of the cdef. Include after pmi_heap.h, which has no
   include guards (cffi reads it as it is). */
#ifndef PMI_INTERNAL_H
#define PMI_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <mimalloc.h>

void*      pmi_meta_realloc(void* p, size_t size);  /* our private meta heap (never a user's heap) */
bool       pmi_heap_enter(pmi_heap_t* heap);        /* bracket uses of the mimalloc heap (see pmi_heap.c) */
void       pmi_heap_leave(pmi_heap_t* heap);
mi_heap_t* pmi_heap_raw(pmi_heap_t* heap);

#endif
