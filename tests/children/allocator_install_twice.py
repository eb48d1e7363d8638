"""install() again adds domains; bad domains raise ValueError or TypeError."""


import pymimalloc

import python_memory  # noqa: F401 - its warning filter

pymimalloc.install(("obj",))
assert pymimalloc.installed() == ("obj",)
pymimalloc.install(("obj",))
pymimalloc.install(("mem",), raw=True)
assert pymimalloc.installed() == ("raw", "mem", "obj")
for bad, error in ((("heap",), ValueError), ((), ValueError), ("mem", TypeError), ((1,), TypeError)):
    try:
        pymimalloc.install(bad)
    except error as e:
        assert str(e)
    else:
        raise AssertionError(f"install({bad!r}) did not raise {error.__name__}")
