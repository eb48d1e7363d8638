"""Blocks allocated before install() are reallocated and freed by the allocator that made them."""

import ctypes

import pymimalloc

from python_memory import api, in_mimalloc_at

old = [api.PyMem_Malloc(100) for _ in range(100)] + [api.PyObject_Malloc(40) for _ in range(100)]
raw = [api.PyMem_RawMalloc(300) for _ in range(100)]
for i, p in enumerate(old + raw):
    ctypes.memset(p, i % 251, 40)
pymimalloc.install(raw=True)
assert not any(in_mimalloc_at(p) for p in old + raw)
# pymalloc grows its own blocks itself; past 512 bytes it asks the raw domain, which mimalloc serves
moved = [api.PyMem_Realloc(p, 5000) for p in old[:100]] + [api.PyObject_Realloc(p, 50) for p in old[100:]]
assert 0 < sum(map(in_mimalloc_at, moved)) <= 100, "only the grown ones can have moved to mimalloc"
for i, p in enumerate(moved):
    assert ctypes.string_at(p, 40) == bytes([i % 251]) * 40, i
for p in moved[:100]: api.PyMem_Free(p)
for p in moved[100:]: api.PyObject_Free(p)
for p in raw: api.PyMem_RawFree(p)
