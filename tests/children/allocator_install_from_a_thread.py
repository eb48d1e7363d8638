"""install() from a thread other than the main one serves the whole process."""

import pymimalloc

from python_memory import in_mimalloc
from threads import run_threads

errors = []
def go():
    try:
        pymimalloc.install()
    except BaseException as e:
        errors.append(e)
run_threads(go)
assert not errors, errors
assert pymimalloc.installed() == ("mem", "obj")
assert all(in_mimalloc(s) for s in [str(i) * 3 for i in range(1000)])
