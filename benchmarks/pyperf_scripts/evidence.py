"""What this process's allocators really are: evidence() returns it as a dict; run as a program, it prints it as
JSON. Used by pyperf_compare.py in a plain child and, through probe.py, inside a pyperf worker."""

import json
import os
import sys
import tempfile


def evidence():
    ev = {"pid": os.getpid(),
          "env_PYTHONMALLOC": os.environ.get("PYTHONMALLOC"),
          "env_PYMIMALLOC_INSTALL": os.environ.get("PYMIMALLOC_INSTALL")}
    try:
        import pymimalloc
    except Exception as exc:
        ev["pymimalloc"] = "not importable: %s: %s" % (type(exc).__name__, exc)
    else:
        ev["pymimalloc"] = getattr(pymimalloc, "__version__", "?")
        fn = getattr(pymimalloc, "installed", None)
        if fn is None:
            ev["pymimalloc_installed"] = None
        else:
            try:
                got = fn()
                ev["pymimalloc_installed"] = list(got) if got else []
            except Exception as exc:
                ev["pymimalloc_installed"] = "error: %s: %s" % (type(exc).__name__, exc)
    try:
        import _testinternalcapi
        ev["pre_config_allocator"] = _testinternalcapi.get_configs()["pre_config"]["allocator"]
    except Exception:
        ev["pre_config_allocator"] = None
    # sys._debugmallocstats() writes to the C stderr: capture fd 2.
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode("utf-8", "replace")
    if "Medium block threshold" in text:
        ev["object_allocator"] = "mimalloc"
    elif "Small block threshold" in text:
        ev["object_allocator"] = "pymalloc"
    else:
        ev["object_allocator"] = "other"
    return ev


if __name__ == "__main__":
    print(json.dumps(evidence()))
