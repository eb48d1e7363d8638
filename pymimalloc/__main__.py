"""The command line.

- ``python -m pymimalloc``: how this copy was built and a short heap demonstration;
- ``python -m pymimalloc bench``: allocator micro-benchmarks against pymalloc and glibc;
- ``python -m pymimalloc run script.py [args]``, ``run -m module [args]`` or ``run -c command [args]``: a
  program with mimalloc serving Python's own allocations (:func:`pymimalloc.install`), run as ``python``
  would run it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys
import time
import zipfile
from types import TracebackType
from typing import TextIO

from . import Heap, __version__, build_info, collect, heap_of, mimalloc_version
from .bench import PATTERNS


def demo(out: TextIO) -> None:
    """Allocate from a heap, look blocks up, and close it, printing each step."""
    with Heap() as heap:
        blocks = [heap.malloc(size) for size in (16, 256, 4096, 1 << 20)]
        blocks[0].view[:5] = b"hello"
        print(f"  allocated  {len(blocks)} blocks: {heap!r}", file=out)
        print(f"  contents   {bytes(blocks[0].view[:5])!r} at {blocks[0].address:#x}", file=out)
        print(f"  heap_of    finds the heap again: {heap_of(blocks[2]) is heap}", file=out)
        grown = heap.realloc(blocks.pop(0), 64)
        print(f"  realloc    keeps the contents: {bytes(grown.view[:5])!r}", file=out)
        kept = heap.zalloc(32)
        for block in blocks:
            block.free()
        grown.free()
    print(f"  closed     with one live block, which stays valid: {heap!r}", file=out)
    print(f"  the block  belongs to no open heap (heap_of: {heap_of(kept)}): {kept!r}", file=out)
    kept.free()
    collect(force=True)
    print(f"  freed      the last block, and the closed heap's memory with it: {heap!r}", file=out)


def info_main(as_json: bool) -> int:
    if as_json:
        json.dump(build_info(), sys.stdout, indent=2)
        print()
        return 0
    print(f"pymimalloc {__version__}")
    for key, value in build_info().items():
        print(f"  {key:17} {value}")
    print("demo:")
    demo(sys.stdout)
    print("benchmarks: python -m pymimalloc bench --quick")
    return 0


#: the largest block size ``bench --size`` takes, in bytes: a batch pattern holds hundreds of such blocks at once
BENCH_MAX_SIZE = 64 << 20


def _size(text: str) -> int:
    units = {"k": 1024, "kib": 1024, "m": 1 << 20, "mib": 1 << 20, "b": 1, "": 1}
    number = text.rstrip("kKmMiIbB ")
    unit = text[len(number):].strip().lower()
    if not number.isdigit() or unit not in units:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 64, 16k, 1m)")
    size = int(number) * units[unit]
    if size > BENCH_MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is too large: a block size is at most {BENCH_MAX_SIZE >> 20}m")
    return size


def _output_path(text: str) -> str:
    """An output file the run can write, checked before the run starts (argparse type)."""
    path = pathlib.Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied")
    return text


BENCH_DESCRIPTION = (
    "Allocator micro-benchmarks run as loops in C: a pymimalloc Heap, mimalloc's default, pymalloc and glibc "
    "malloc, side by side."
)


def _bench_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = BENCH_DESCRIPTION
    parser.add_argument("--quick", action="store_true", help="a short run, about 10 s: fewer sizes, shorter rounds")
    parser.add_argument("--pattern", action="append", choices=list(PATTERNS), help="only these patterns")
    parser.add_argument("--size", action="append", type=_size, help="only these sizes (64, 16k, 1m, ...)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per measurement (median; default 5)")
    parser.add_argument("--ratios", action="store_true", help="also print each allocator's time / pymalloc's")
    parser.add_argument("--json", metavar="PATH", type=_output_path, help="also write machine-readable results")
    parser.add_argument("--plot", metavar="PATH", type=_output_path,
                        help="also write a PNG heatmap of each time / the best default's (needs matplotlib)")
    parser.add_argument("--markdown", metavar="PATH", type=_output_path,
                        help="also write a Markdown page of the run: both tables, the legend, and the --plot chart")
    return parser


def bench_main(argv: list[str]) -> int:
    from .bench import plan, run_suite
    from .bench.report import PlotUnavailable, write_json, write_markdown, write_plot, write_table

    parser = _bench_parser(argparse.ArgumentParser(prog="python -m pymimalloc bench"))
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.plot:
        try:
            import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib, an optional extra: pip install 'pymimalloc[plot]'",
                  file=sys.stderr)
            return 2
    cases = plan(args.pattern, args.size, quick=args.quick)
    started = time.monotonic()

    def progress(done: int, total: int, case: object) -> None:
        print(f"\r[{done + 1}/{total}] {case.label:<32}", end="", file=sys.stderr, flush=True)  # type: ignore[attr-defined]

    suite = run_suite(cases, repeat=args.repeat, quick=args.quick, progress=progress)
    print(f"\r{' ' * 48}\r", end="", file=sys.stderr)
    write_table(suite, sys.stdout, ratios=args.ratios)
    print(f"({len(cases)} cases in {time.monotonic() - started:.1f} s)", file=sys.stderr)
    if args.json:
        write_json(suite, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        try:
            write_plot(suite, args.plot)
        except PlotUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {args.plot}")
    if args.markdown:
        plot = os.path.relpath(os.path.abspath(args.plot), os.path.dirname(os.path.abspath(args.markdown))) if args.plot else ""
        write_markdown(suite, args.markdown, " ".join(["python -m pymimalloc bench", shlex.join(argv)]), plot)
        print(f"wrote {args.markdown}")
    return 0


RUN_USAGE = (
    "python -m pymimalloc run [--raw] script.py [args ...]\n"
    "       python -m pymimalloc run [--raw] -m module [args ...]\n"
    "       python -m pymimalloc run [--raw] -c command [args ...]"
)
RUN_DESCRIPTION = (
    "Run a Python program with mimalloc serving Python's own allocations (pymimalloc.install()), exactly as "
    "`python script.py`, `python -m module` or `python -c command` would run it."
)


def run_main(argv: list[str]) -> int:
    """Install mimalloc as Python's allocator, then run a script, module or command as ``__main__``.

    Arguments, ``sys.argv``, ``sys.path[0]``, error messages, tracebacks and exit codes are Python's own.
    """
    raw = argv[:1] == ["--raw"]
    if raw:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {RUN_USAGE}\n\n{RUN_DESCRIPTION}\n\n  --raw  also serve the raw domain "
              "(PyMem_RawMalloc, called without the GIL)", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] in ("-c", "-m") and len(argv) < 2:
        print(f"Argument expected for the {argv[0]} option\nusage: {RUN_USAGE}", file=sys.stderr)
        return 2
    if argv[0] not in ("-c", "-m") and not os.path.exists(argv[0]):
        print(f"{sys.executable}: can't open file {os.path.abspath(argv[0])!r}: [Errno 2] No such file or directory",
              file=sys.stderr)
        return 2
    from .allocator import install

    install(raw=raw)
    try:
        _run_as_main(argv)
    except SystemExit:
        raise  # on to Python, which exits as it asks
    except KeyboardInterrupt as interrupt:  # on to Python, whose exit then is SIGINT's; printed without our frames
        _print_without_our_frames(interrupt, runpy_too=argv[0] != "-m")
        raise
    except BaseException as error:  # noqa: BLE001  (any other exception: Python prints it and exits with 1)
        # Python prints the exception's own traceback (it ignores the argument when the exception has one)
        error.__traceback__ = _their_frames(error.__traceback__, runpy_too=argv[0] != "-m")
        _print_as_python_does(getattr(sys, "excepthook", _MISSING), error, error.__traceback__)
        return 1
    return 0


def _run_as_main(argv: list[str]) -> None:
    """Run ``argv`` (``-m module ...``, ``-c command ...`` or ``script ...``) as Python's command line does."""
    import runpy

    if argv[0] == "-m":
        _new_main_module()  # runpy runs the module in sys.modules["__main__"]: that is this file until replaced
        sys.argv = ["-m", *argv[2:]]  # runpy puts the module's path in argv[0], as python -m does
        # what python -m itself calls: its messages ("No module named ...") and exit codes are Python's
        runpy._run_module_as_main(argv[1], alter_argv=True)  # type: ignore[attr-defined]
    elif argv[0] == "-c":
        namespace = _new_main_module()
        sys.argv = ["-c", *argv[2:]]
        if not sys.flags.safe_path:
            sys.path[0] = ""  # python -c: the current directory, as ""
        if sys.version_info >= (3, 13):  # python -c shows the command's lines in tracebacks from 3.13 on
            import linecache

            linecache.cache["<string>"] = (len(argv[1]), None, argv[1].splitlines(True), "<string>")
        exec(compile(argv[1], "<string>", "exec"), namespace)
    elif os.path.isdir(argv[0]) or zipfile.is_zipfile(argv[0]):
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")  # a folder or zip with __main__.py
    else:
        import importlib.machinery
        import io

        path = os.path.abspath(argv[0])  # python names a script by its absolute path (__file__, tracebacks)
        namespace = _new_main_module(__file__=path, __cached__=None,
                                     __loader__=importlib.machinery.SourceFileLoader("__main__", path))
        sys.argv = list(argv)
        if not sys.flags.safe_path:
            sys.path[0] = os.path.dirname(path)
        with io.open_code(path) as f:
            code = compile(f.read(), path, "exec", dont_inherit=True)
        exec(code, namespace)


def _new_main_module(**names: object) -> dict[str, object]:
    """A new ``__main__`` module, put in sys.modules as Python's own is; its namespace."""
    import builtins
    import importlib.machinery
    import types

    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __loader__=importlib.machinery.BuiltinImporter, __annotations__={})
    main.__dict__.update(names)
    sys.modules["__main__"] = main
    return main.__dict__


def _print_without_our_frames(interrupt: BaseException, runpy_too: bool) -> None:
    """Have Python's top level print ``interrupt`` without the frames above the program's, as it prints a traceback
    of ``python script.py``: sys.excepthook, when Python calls it for that exception, first drops them."""
    shown = getattr(sys, "excepthook", _MISSING)

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if value is interrupt:
            while tb is not None and tb.tb_frame.f_code is not run_main.__code__:
                tb = tb.tb_next  # python -m pymimalloc's own frames, down to run_main's
            tb = _their_frames(tb.tb_next if tb is not None else None, runpy_too)
            value.__traceback__ = tb
        _print_as_python_does(shown, value, tb)

    sys.excepthook = hook


def _print_as_python_does(hook: object, error: BaseException, tb: TracebackType | None) -> None:
    """Print an uncaught ``error`` through ``hook`` (the program's sys.excepthook) as Python's top level does,
    its messages included when the hook is missing or raises (Python/pythonrun.c, _PyErr_PrintEx)."""

    def say(text: str) -> None:
        if sys.stderr is not None:
            sys.stderr.write(text)

    sys.last_type, sys.last_value, sys.last_traceback = type(error), error, tb  # as Python's top level sets them
    if sys.version_info >= (3, 12):
        sys.last_exc = error

    if hook is _MISSING:
        say("sys.excepthook is missing\n")
        sys.__excepthook__(type(error), error, tb)
        return
    try:
        hook(type(error), error, tb)  # type: ignore[operator]  # None too: Python calls it, and says it failed
    except SystemExit:
        raise  # Python exits as the hook asked
    except BaseException as failure:  # noqa: BLE001  (Python reports whatever the hook raised, then the original)
        # as Python shows it: from the hook's frame (not this one), and not as raised while handling `error`
        failure.__traceback__ = failure.__traceback__.tb_next if failure.__traceback__ is not None else None
        failure.__suppress_context__ = True
        say("Error in sys.excepthook:\n")
        sys.__excepthook__(type(failure), failure, failure.__traceback__)
        say("\nOriginal exception was:\n")
        sys.__excepthook__(type(error), error, tb)


_MISSING = object()  # sys.excepthook deleted


def _their_frames(tb: TracebackType | None, runpy_too: bool) -> TracebackType | None:
    """``tb`` without its first frames that are this file's (and runpy's: python script.py shows none)."""
    import runpy

    ours = {os.path.abspath(__file__)}
    if runpy_too:
        ours |= {os.path.abspath(runpy.__file__), "<frozen runpy>"}
    while tb is not None and (tb.tb_frame.f_code.co_filename in ours
                              or os.path.abspath(tb.tb_frame.f_code.co_filename) in ours):
        tb = tb.tb_next
    return tb


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return bench_main(argv[1:])
    if argv[:1] == ["run"]:
        return run_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m pymimalloc",
        usage="python -m pymimalloc [-h] [--version] [--json]\n       python -m pymimalloc bench [options]\n"
        "       python -m pymimalloc run [--raw] script.py|-m module|-c command [args ...]",
        description="Show how this copy of pymimalloc was built and run a short heap demonstration.",
        epilog="subcommands:\n  bench       " + BENCH_DESCRIPTION + "\n              See: python -m pymimalloc bench --help"
        "\n  run         " + RUN_DESCRIPTION + "\n              See: python -m pymimalloc run --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pymimalloc {__version__} (mimalloc {mimalloc_version})")
    parser.add_argument("--json", action="store_true", help="print build_info() as JSON only")
    args = parser.parse_args(argv)
    return info_main(args.json)


if __name__ == "__main__":
    sys.exit(main())
