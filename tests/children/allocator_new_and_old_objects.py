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
    grown.append(i)                                   # realloc of mimalloc's item array
print("ok", len(after), len(grown))
