"""A refused install() (CPython's debug hooks are on) leaves tracemalloc's traces alone: prints whether it was
refused for the debug hooks, and whether the traces of the kept blocks are there before and after."""

import tracemalloc

import pymimalloc

tracemalloc.start(5)


def keep():
    return [bytearray(1000) for _ in range(100)]


kept = keep()


def kept_bytes(snapshot):  # what the traces attribute to keep(): gone if tracemalloc was restarted
    traced = snapshot.filter_traces([tracemalloc.Filter(True, __file__, lineno=keep.__code__.co_firstlineno + 1)])
    return sum(stat.size for stat in traced.statistics("lineno"))


before = kept_bytes(tracemalloc.take_snapshot())
try:
    pymimalloc.install()
except RuntimeError as error:
    refused = "debug hooks" in str(error)
else:
    refused = False
after = kept_bytes(tracemalloc.take_snapshot())
print(refused, before >= 100000, after >= 100000)  # a restart would have dropped them all
