"""Buffers that Python grows a little at a time (bytearray +=, list.append) under install(): contents stay right,
and the copies a growing block leaves behind when it moves do not stay resident.

Blocks above 512 KiB are the previous allocator's, and so the C library's, which grows them in place or with mremap:
a block that must move to grow beyond about 86 KiB leaves mimalloc once, its page going back to the OS at once. mimalloc
copied such a buffer at every move, and each copy stayed resident for its purge delay (1 s): about as much again as
the final buffer. (A memory checker's malloc keeps freed blocks in quarantine: the test skips there.)"""

import pymimalloc


def rss() -> int:
    return pymimalloc.process_info().current_rss


pymimalloc.install()
final = 96 << 20
zeros = memoryview(b"\0" * (final // 8))  # resident before the baseline; no temporaries while growing
before = rss()
buffer = bytearray(64 << 10)  # mimalloc's; it leaves for the C library's once it moves past ~86 KiB
while len(buffer) < final:
    buffer += zeros[: len(buffer) // 8]  # CPython's own growth step for lists: an eighth
    buffer[-1] = 1
grown = rss() - before
assert len(buffer) >= final and buffer[(64 << 10) - 1] == 0 and buffer[-1] == 1
assert grown < 1.5 * len(buffer), f"RSS grew by {grown >> 20} MiB for a {len(buffer) >> 20} MiB buffer"

items = []
for i in range(2_000_000):
    items.append(i)
assert items[-1] == 1_999_999 and sum(items[:1000]) == 499_500
print("ok")
