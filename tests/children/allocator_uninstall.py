"""uninstall() routes new allocations back to pymalloc and still frees mimalloc's blocks; twice is harmless."""

import gc

import pymimalloc

from python_memory import in_mimalloc

pymimalloc.install()
ours = [str(i) * 5 for i in range(10000)]
assert all(in_mimalloc(s) for s in ours)
pymimalloc.uninstall()
assert pymimalloc.installed() == () and pymimalloc.allocator.hooked() == ("mem", "obj")
theirs = [str(i) * 5 for i in range(10000)]
assert not any(in_mimalloc(s) for s in theirs)
ours.extend(theirs)
del ours, theirs
gc.collect()
pymimalloc.uninstall()                                # harmless twice
pymimalloc.install()
assert all(in_mimalloc(s) for s in [str(i) * 5 for i in range(1000)])
