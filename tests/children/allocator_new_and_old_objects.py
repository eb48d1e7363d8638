"""After install(), new objects come from mimalloc and pymalloc's old ones are reallocated and freed through the
hook; prints ok and the two counts."""

import gc

import pymimalloc

from python_memory import in_mimalloc

before = [str(i) * 3 for i in range(20000)]           # pymalloc's
assert not any(in_mimalloc(s) for s in before[:100])
assert pymimalloc.installed() == ()
pymimalloc.install()
assert pymimalloc.installed() == ("mem", "obj"), pymimalloc.installed()
after = [str(i) * 3 for i in range(20000)]
assert all(in_mimalloc(s) for s in after), "new objects must come from mimalloc"
before.extend(after)                                  # realloc of pymalloc's item array
del before                                            # frees of pymalloc's objects, through the hook
gc.collect()
grown = []
for i in range(100000):
    grown.append(i)                                   # realloc of mimalloc's item array, to the C library's at 512 KiB
assert grown[:3] == [0, 1, 2] and grown[-1] == 99999
# blocks above 512 KiB are the previous allocator's (the C library grows them without copying)
assert in_mimalloc(bytes(500 * 1024)) and not in_mimalloc(bytes(600 * 1024))
print("ok", len(after), len(grown))
