"""Run with PYTHONMALLOC=malloc: install() hooks the malloc allocator too."""


import pymimalloc

from python_memory import in_mimalloc

old = [str(i) for i in range(5000)]
pymimalloc.install(raw=True)
new = [str(i) for i in range(5000)]
assert all(in_mimalloc(s) for s in new)
del old
