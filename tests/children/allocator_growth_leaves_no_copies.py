"""Buffers that Python grows a little at a time (bytearray +=, list.append) under install(): contents stay right,
and the copies a growing block leaves behind when it moves do not stay resident.

A block of more than 512 KiB has a mimalloc page of its own; when the hook moves one to grow it, the old page
goes back to the OS at once (the C library grows such blocks in place with mremap). Without that, the copies
stay resident for mimalloc's purge delay (1 s): about as much again as the final buffer."""

import pymimalloc


def rss() -> int:
    return pymimalloc.process_info().current_rss


pymimalloc.install()
final = 96 << 20
zeros = memoryview(b"\0" * (final // 8))  # resident before the baseline; no temporaries while growing
before = rss()
buffer = bytearray(1 << 20)
while len(buffer) < final:
    buffer += zeros[: len(buffer) // 8]  # CPython's own growth step for lists: an eighth
    buffer[-1] = 1
grown = rss() - before
assert len(buffer) >= final and buffer[(1 << 20) - 1] == 0 and buffer[-1] == 1
assert grown < 1.5 * len(buffer), f"RSS grew by {grown >> 20} MiB for a {len(buffer) >> 20} MiB buffer"

items = []
for i in range(2_000_000):
    items.append(i)
assert items[-1] == 1_999_999 and sum(items[:1000]) == 499_500
print("ok")
