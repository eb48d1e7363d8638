"""Under install(), the memory of objects a program made and dropped goes back to the system on
pymimalloc.collect(force=True), which docs/allocator.md tells a program that goes quiet to call: mimalloc purges
freed pages only when some thread next calls into its arenas (benchmarks/rss_after_free.py: 274 MiB of 297 stayed
resident through 2 s of idling, 15 after the call; pymalloc had 11 at once). Prints the resident set in MiB after making about
150 MiB of strings, after dropping them, and after the call."""

import pymimalloc

pymimalloc.install()


def rss_mib() -> float:
    return pymimalloc.process_info().current_rss / 2**20  # the kernel's resident set


data = [str(i) * 5 for i in range(1_500_000)]
made = rss_mib()
del data
freed = rss_mib()
pymimalloc.collect(force=True)
print(f"{made:.0f} {freed:.0f} {rss_mib():.0f}")
