"""A bench kernel that runs out of memory frees the blocks it held: under RLIMIT_AS, batch and ring of 64 MiB blocks
raise MemoryError and leave glibc's address space as it was, and no live block in the heap (before, every block
they had allocated stayed). mimalloc keeps the arenas it reserved, so a heap is checked by a walk instead, and by
allocating again: its arenas' space is free, not given back to the system. How much address space the arenas take
before one fails depends on their size (64 MiB at a time by default, 1 GiB in mimalloc), so the C library is only
asked for what its own kernel held, 64 MiB."""

import re
import resource

import pymimalloc
from pymimalloc.bench import measure, plan


def vm_mib() -> int:
    found = re.search(r"VmSize:\s+(\d+)", open("/proc/self/status").read())
    assert found is not None
    return int(found.group(1)) // 1024


resource.setrlimit(resource.RLIMIT_AS, ((vm_mib() + 3000) << 20, resource.RLIM_INFINITY))  # 3 GB of headroom
heap = pymimalloc.Heap()
cases = [case for case in plan(["batch", "ring"], [64 << 20]) if case.param in (0, 100)]  # 6.4 and 64 GB
assert len(cases) == 2, cases
# the C library first: mimalloc keeps what its arenas reserved, and 64 MiB arenas (its blocks of 64 MiB take 96 MiB
# ones) leave less than 64 MiB of the limit unreserved once a heap ran out of it
for allocator in ("glibc", "heap"):
    for case in cases:
        before = vm_mib()
        try:
            measure(case, [allocator], heap, 1, 0.01)
        except MemoryError:
            pass
        else:
            raise AssertionError(f"{case.label} on {allocator} did not run out of memory")
        if allocator == "glibc":
            after = vm_mib()
            assert after - before < 256, f"{case.label} on glibc: VmSize {before} -> {after} MiB after MemoryError"
            bytearray(64 << 20)  # the address space it held is usable again
        else:
            held = heap.blocks()
            assert not held, f"{case.label} on a heap: {len(held)} blocks left after MemoryError"
            heap.malloc(64 << 20).free()  # and the heap's memory
heap.close()
print("OK")
