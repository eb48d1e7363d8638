"""New threads' first objects while another thread walks the main heap."""

import threading

import pymimalloc

import python_memory  # noqa: F401 - its warning filter
from threads import run_threads, threads_running

pymimalloc.install()
stop = threading.Event()
def walk():
    while not stop.is_set():
        pymimalloc.main_heap().blocks()
def newcomer():
    kept = [str(i) * 3 for i in range(200)]
    assert kept[-1] == "199199199"
with threads_running(walk):
    try:
        for _ in range(40):
            run_threads(*[newcomer] * 8)
    finally:
        stop.set()
