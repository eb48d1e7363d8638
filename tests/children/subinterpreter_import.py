"""`import pymimalloc` in a sub-interpreter raises an ImportError that says why, whether the main interpreter imported
it first ("main-first"; also "installed at start") or not ("sub-first"), and leaves the main interpreter's pymimalloc working. Prints SKIP where
this Python has no module to make sub-interpreters with. Legacy sub-interpreters (sharing the GIL) are the ones
whose import reaches pymimalloc's code; isolated ones (3.12 and later) refuse a single-phase module themselves."""

import sys

try:
    import _interpreters as interpreters  # 3.13

    def make() -> object:
        return interpreters.create("legacy")
except ImportError:
    try:
        import _xxsubinterpreters as interpreters  # 3.11, 3.12
    except ImportError:
        print("SKIP")
        raise SystemExit(0)

    def make() -> object:
        try:
            return interpreters.create(isolated=False)  # 3.12
        except TypeError:
            return interpreters.create()  # 3.11: always legacy

order = sys.argv[1]
if order != "sub-first":
    import pymimalloc

CODE = """
try:
    import pymimalloc
except ImportError as error:
    message = str(error)
else:
    message = "imported"
"""
for attempt in range(2):
    interpreter = make()
    try:
        outcome = interpreters.run_string(interpreter, CODE + "\nassert 'sub-interpreter' in message, message\n")
    finally:
        interpreters.destroy(interpreter)
    assert outcome is None, outcome  # 3.13 returns the exception's details instead of raising

if order == "installed at start":  # isolated sub-interpreters (3.12 on) refuse the modules the start needs: silently
    def make_isolated() -> object | None:
        try:
            return interpreters.create("isolated") if interpreters.__name__ == "_interpreters" else interpreters.create(isolated=True)
        except TypeError:
            return None  # 3.11: legacy only

    for attempt in range(2):
        isolated = make_isolated()
        if isolated is not None:
            interpreters.run_string(isolated, "pass")
            interpreters.destroy(isolated)

import pymimalloc  # noqa: E402

with pymimalloc.Heap() as heap:
    block = heap.malloc(64)
    assert block in heap
    block.free()

# A sub-interpreter run inside the main interpreter's python_objects() block keeps its objects out of the block's
# heap: up to 3.12, once it set a ContextVar, all 8,000 went there (found by review)
heap = pymimalloc.Heap()
interpreter = make()
try:
    with heap.python_objects():
        before = heap.live_blocks
        interpreters.run_string(interpreter, "import contextvars\ncontextvars.ContextVar('v').set(1)\n"
                                             "junk = [[object() for _ in range(20)] for k in range(400)]")
        routed = heap.live_blocks - before
finally:
    interpreters.destroy(interpreter)
assert routed < 100, f"{routed} of the sub-interpreter's objects went into the main interpreter's heap"
heap.close()
print("OK")
