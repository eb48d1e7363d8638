"""After install(), new objects come from mimalloc and pymalloc's old ones are reallocated and freed through the
hook; prints ok and the two counts."""

import ctypes
import gc

import pymimalloc

from python_memory import in_mimalloc, in_mimalloc_at


def data_address(buffer: bytearray) -> int:
    return ctypes.addressof((ctypes.c_char * 1).from_buffer(buffer))


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
    grown.append(i)                                   # realloc of mimalloc's item array, to the C library's from ~86 KiB
assert grown[:3] == [0, 1, 2] and grown[-1] == 99999
# blocks above 512 KiB are the previous allocator's (the C library grows them without copying)
assert in_mimalloc(bytes(500 * 1024)) and not in_mimalloc(bytes(600 * 1024))
# and so is a block that must move to grow to more than 128 KiB with its room (half as much again)
pattern = bytes(range(251)) * 1024                    # no run of zeros: a short copy shows
small, large = bytearray(pattern[: 20 * 1024]), bytearray(pattern[: 100 * 1024])
assert in_mimalloc_at(data_address(small)) and in_mimalloc_at(data_address(large))
small += pattern[20 * 1024 : 30 * 1024]               # moves within mimalloc, with room
large += pattern[100 * 1024 : 140 * 1024]             # moves to the C library
assert in_mimalloc_at(data_address(small)) and not in_mimalloc_at(data_address(large))
assert small == pattern[: 30 * 1024] and large == pattern[: 140 * 1024]
print("ok", len(after), len(grown))
