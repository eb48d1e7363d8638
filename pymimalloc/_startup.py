"""Install mimalloc as CPython's allocator at interpreter start, when ``PYMIMALLOC_INSTALL`` asks for it.

Wheels and editable installs put ``pymimalloc.pth`` in site-packages. Its line imports the top-level
``_pymimalloc_startup`` only when the variable is set (an interpreter without it pays one dictionary lookup),
and that runs :func:`main` from this file without importing the package. Values: ``1`` (the "mem" and "obj" domains), or a
comma-separated list of domains such as ``mem,obj,raw``; ``0`` or empty: off. A value that cannot be
honoured is reported on stderr, and Python starts without pymimalloc's allocator.

At start it loads only the compiled module (and cffi's backend), not the ``pymimalloc`` package, so a
program sees the modules it imports itself (``threading``, ``json``, ...) as not yet imported. A compiled
module built for CPU features this CPU lacks is not loaded (``_cpu.py``, run from its file the same way). Whatever
the short path cannot decide (tracemalloc already tracing, a refusal to explain) goes through
:func:`pymimalloc.install`, which is the one place that turns statuses into messages.
"""

# no `from __future__ import annotations`: at start it would load __future__ into every process (16 KiB)

import os
import sys

VARIABLE = "PYMIMALLOC_INSTALL"
DOMAIN_BITS = {"raw": 1, "mem": 2, "obj": 4}  # csrc/pmi_allocator.h; checked against it by the tests
REFUSED_PREFIX = "pymimalloc set mimalloc option"  # how each refused-option message starts (csrc/pmi_heap.c)


def report(message: object) -> None:
    """Say ``message`` on stderr; nothing if stderr is closed (``sys.stderr`` is None: print would use stdout,
    into the program's output), as Python's own warnings do."""
    if sys.stderr is not None:
        print(message, file=sys.stderr)


def _in_a_sub_interpreter() -> bool:
    """Whether this start is a sub-interpreter's (asked only after an ImportError: that imports a module)."""
    import importlib

    for name in ("_interpreters", "_xxsubinterpreters"):  # 3.13; 3.11 and 3.12
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return bool(module.get_current() != module.get_main())
    return False


def domains_from(value: str) -> tuple[str, ...]:
    """The domains a ``PYMIMALLOC_INSTALL`` value asks for (empty: none). ValueError for a bad value."""
    value = value.strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return ()
    if value in ("1", "yes", "true", "on"):
        return ("mem", "obj")
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in DOMAIN_BITS]
    if unknown or not names:
        raise ValueError(f"{VARIABLE}={value!r}: use 1, or domains from {', '.join(DOMAIN_BITS)} separated by commas")
    return names


def _install_early(domains: tuple[str, ...]) -> bool:
    """Hook and route ``domains`` with the compiled module alone, found beside this file. False if the full path
    must decide."""
    import _tracemalloc

    # mimalloc reads its variables whatever their case (mimalloc_max_vabits too)
    if "pymimalloc" in sys.modules or _tracemalloc.is_tracing() or any(
        key.upper() == "MIMALLOC_MAX_VABITS" for key in os.environ
    ):
        return False  # the package is loaded, tracemalloc traces, or the import must refuse: the full path
    import importlib.machinery

    # the package's folder: _pymimalloc_startup.py found it through sys.meta_path, and ran this file from there
    folder = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.machinery.PathFinder.find_spec("pymimalloc._mimalloc", [folder])
    if spec is None or spec.loader is None:
        return False  # a source checkout without its compiled module: the full path explains
    if spec.origin is None or _cpu_refuses(spec.origin):
        return False  # built for features this CPU lacks: the full path refuses and says why, without loading it
    module = spec.loader.create_module(spec)
    if module is None:
        return False
    sys.modules[spec.name] = module  # the package's own import finds it there later
    spec.loader.exec_module(module)
    lib = module.lib
    status = lib.pmi_init()  # puts refused options back first, as `import pymimalloc` does (csrc/pmi_heap.c)
    for message in module.ffi.string(lib.pmi_refused_report()).decode("utf-8", "replace").splitlines():
        report(message)  # the text pymimalloc.options warns with
    installed = lib.pmi_allocator_install(id(module))
    if installed == lib.PMI_PYTHON_EINTERPRETER:
        return True  # a sub-interpreter's start: the allocator is the process's, which the main interpreter's start served
    if status != 0 or installed != 0:
        return False
    mask = 0
    for name in domains:
        mask |= DOMAIN_BITS[name]
    return bool(module._allocator_hook(mask, True) == 0)


def _cpu_refuses(module_path: str, cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether ``_cpu.py`` (beside this file, run from there) refuses the compiled module at ``module_path``."""
    import importlib.machinery  # not importlib.util, which costs 0.65 MiB on 3.11 (_pymimalloc_startup.py)

    path = os.path.join(os.path.dirname(__file__), "_cpu.py")
    loader = importlib.machinery.SourceFileLoader("pymimalloc._cpu", path)
    cpu = type(sys)(loader.name)
    cpu.__file__, cpu.__loader__ = path, loader
    loader.exec_module(cpu)
    return cpu.check_module_file(module_path, cpuinfo) is not None


def main() -> None:
    """Install mimalloc as Python's allocator as ``PYMIMALLOC_INSTALL`` asks; a refusal is reported on stderr.
    Takes no argument, as in every version: ``_pymimalloc_startup.py`` (a top-level module) and this file (in the
    package) may come from different versions when a checkout is on ``PYTHONPATH``."""
    try:
        domains = domains_from(os.environ.get(VARIABLE, ""))
        if domains and not _install_early(domains):
            import warnings

            with warnings.catch_warnings(record=True) as caught:
                # the options mimalloc's start put back: on stderr as the early path prints them, even under -W error
                warnings.filterwarnings("always", REFUSED_PREFIX, RuntimeWarning)
                # at start nothing of the program was traced yet: nothing is lost
                warnings.filterwarnings(
                    "ignore", "pymimalloc.install.. put pymimalloc.s allocator hook in place", RuntimeWarning
                )
                from pymimalloc import install

                install(domains)
            for warning in caught:
                if str(warning.message).startswith(REFUSED_PREFIX):
                    report(warning.message)
                else:  # anything else, as the filters outside would have shown it
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    except (ValueError, RuntimeError, MemoryError, ImportError, OSError, Warning) as error:
        if isinstance(error, ImportError) and _in_a_sub_interpreter():
            return  # an isolated one refuses the modules the start needs; the main interpreter's start served the process
        report(f"pymimalloc: not installed as Python's allocator: {error}")

