"""Run under CPython's debug hooks: install() refuses and prints why."""


import pymimalloc

import python_memory  # noqa: F401 - its warning filter

try:
    pymimalloc.install()
except RuntimeError as e:
    print(e)
assert pymimalloc.installed() == ()
