"""good_size(n) is at least n and at most 2**63 - 1, around every power of two up to 2**40."""

import pymimalloc

LIMIT = 2**63 - 1
try:
    result = pymimalloc.good_size(LIMIT)
except MemoryError:
    pass
else:  # a checked build rounds less; the answer must still be a size malloc accepts
    assert result == LIMIT, f"good_size(2**63 - 1) returned {result}"
sizes = {0, 1, 7, 8, 9, 1000, 4095, 4096, 4097, 10 << 10, 70000}
for k in range(4, 41):
    sizes |= {2**k - 1, 2**k, 2**k + 1, 3 * 2**(k - 1)}
for n in sorted(s for s in sizes if s <= 2**40):
    good = pymimalloc.good_size(n)
    assert n <= good <= LIMIT, (n, good)
