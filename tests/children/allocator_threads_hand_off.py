"""Objects made in one thread are freed in another, raw domain served, while short-lived threads come and go;
prints the items counted."""

import queue

import pymimalloc

import python_memory  # noqa: F401 - its warning filter
from threads import run_threads

pymimalloc.install(raw=True)
q = queue.Queue(maxsize=64)
def make():
    for i in range(3000):
        q.put([str(j) * (i % 7 + 1) for j in range(20)] + [bytearray(i % 500), {i: (i, i)}])
    q.put(None)
def take():
    n = 0
    while (item := q.get()) is not None:
        n += len(item)
    print(n)
def churn():   # short-lived threads: thread states and their raw memory come and go
    for _ in range(50):
        run_threads(lambda: [bytes(64) for _ in range(100)])
run_threads(make, take, churn, churn)
