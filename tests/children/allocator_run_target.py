"""What tests/test_allocator.py runs with python -m pymimalloc run: prints the installed domains, its arguments and
its __name__, and exits with the code argv[1] gives."""

import sys

import pymimalloc

print(pymimalloc.installed(), sys.argv[1:], __name__)
sys.exit(int(sys.argv[1]))
