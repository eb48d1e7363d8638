"""Every writable mimalloc option at a non-default value, each in a fresh interpreter.

Each case sets one option (at run time through ``pymimalloc.options``, or before import through
``MIMALLOC_<NAME>``), then creates a heap, allocates blocks of every size class up to 8 MiB, a 1 MiB-aligned
block and a numpy array, walks the heap, closes it with blocks still alive, frees them, walks the main heap,
collects, does the same in two threads, and exits. The child must exit 0 with nothing on stderr and with
no error reported by mimalloc (``pmi_error_count() == 0``).

An option that breaks mimalloc is refused instead: setting it raises ValueError naming the option and
leaves its value alone; set through the environment, it is put back to its safe default at import with
a RuntimeWarning on stderr. Which options those are is the library's decision; :data:`REFUSED` below is
the list this file expects.

The children run in a thread pool (:data:`WORKERS` at a time) started by the first test that needs one,
so the ~90 children take about 15 s on two cores while each case still passes or fails on its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pytest

import pymimalloc
from childproc import CHILDREN, describe, run

#: Options pymimalloc refuses to set to anything but their safe default (see the module docstring).
REFUSED: frozenset[str] = frozenset({"destroy_on_exit", "guarded_sample_rate", "visit_abandoned"})

#: max_vabits is read once, at start: setting it later raises ValueError (like a refused option), and
#: MIMALLOC_MAX_VABITS makes the import raise ImportError before mimalloc starts (with 40 bits release
#: builds segfaulted; checked builds failed an assertion at start even with 48).
READ_AT_START: frozenset[str] = frozenset({"max_vabits"})

#: Options whose whole point is to print. mimalloc writes to stderr for them (the option list and a
#: trace for verbose, statistics at exit for show_stats, each error and warning for show_errors), so
#: their children may print; they must still exit 0 and report no error to pymimalloc's handler.
OUTPUT_OPTIONS: frozenset[str] = frozenset({"show_errors", "show_stats", "verbose"})

#: Options that take memory away on purpose. disallow_os_alloc=1 leaves mimalloc only the arenas reserved
#: so far: allocations that need fresh OS memory (a 1 MiB-aligned block always does) raise MemoryError,
#: and set through the environment without MIMALLOC_RESERVE_OS_MEMORY the import itself raises
#: ImportError saying so. Their children accept MemoryError (and mimalloc's ENOMEM reports) and nothing else.
STARVED: frozenset[str] = frozenset({"disallow_os_alloc"})

#: Options under which mimalloc reports errors or warnings by design: out of memory when starved, and no
#: huge OS pages on a machine that has none configured. Checked builds print every report (their
#: show_errors defaults to 1), so these children may print lines that start with "mimalloc: ".
EXPECTED_REPORTS: frozenset[str] = STARVED | {"reserve_huge_os_pages"}

#: mimalloc reads these in KiB; a bare number in MIMALLOC_<NAME> would be taken as bytes (rounded up to
#: KiB), so the environment sweep spells them with a "KiB" suffix to mean the same value as at run time.
KIB_OPTIONS: frozenset[str] = frozenset(
    {"reserve_os_memory", "arena_reserve", "minimal_purge_size", "arena_max_object_size"}
)

#: For every option, the non-default values to try (one child each) and why these. Defaults are those
#: of mimalloc v3.4.3 on 64-bit Linux, release build (checked against the library by
#: test_the_table_has_non_default_values_for_every_option).
NON_DEFAULT: dict[str, tuple[int, ...]] = {
    "show_errors": (1, 0),  # default 0 (1 in debug builds): print errors and warnings, or not (output allowed)
    "show_stats": (1,),  # default 0: print statistics at exit (output allowed)
    "verbose": (1,),  # default 0: print the options and a trace (output allowed)
    "arena_eager_commit": (0, 1),  # default 2 (eager only where the OS overcommits): never, and always
    "purge_decommits": (0,),  # default 1: purge by resetting pages (MADV_FREE) instead of decommitting
    "allow_large_os_pages": (1,),  # default 0: use 2 MiB OS pages where the OS gives them (else falls back)
    # default 0: reserve one 1 GiB huge page at process start (read only then; mimalloc gives up after
    # 500 ms per page and carries on with normal pages when the machine has none configured)
    "reserve_huge_os_pages": (1,),
    "reserve_huge_os_pages_at": (0,),  # default -1 (interleave): NUMA node 0; used only with the one above
    "reserve_os_memory": (64 * 1024,),  # KiB, default 0: reserve a small 64 MiB arena at process start
    "purge_delay": (0, -1),  # ms, default 1000: purge at once, and never purge
    "use_numa_nodes": (1,),  # default 0 (all detected): act as if there were a single NUMA node
    "disallow_os_alloc": (1,),  # default 0: no fresh OS memory, only arenas reserved already
    "os_tag": (101,),  # default 100: the macOS VM tag; no effect on other systems
    "max_errors": (-1,),  # default 32: no limit on printed errors (read at process start)
    "max_warnings": (0,),  # default 32: print no warnings (read at process start)
    "destroy_on_exit": (1,),  # default 0: release all OS memory at exit (REFUSED)
    # KiB, pymimalloc's default 64 MiB (pmi_option_defaults, at import): reserve arenas 256 MiB at a time,
    # 4 MiB at a time (below the 8 MiB block), and mimalloc's own default 1 GiB
    "arena_reserve": (256 * 1024, 4 * 1024, 1024 * 1024),
    "arena_purge_mult": (0, 10),  # default 1: arenas purge at once, and ten times later than purge_delay
    "disallow_arena_alloc": (1,),  # default 0: allocate pages straight from the OS, never from arenas
    "retry_on_oom": (0,),  # ms, default 400: no retries on out-of-memory (Windows only)
    "visit_abandoned": (0,),  # mimalloc's default 0, but pymimalloc turns it on for its walks (REFUSED)
    "guarded_min": (16,),  # default 0: guard objects from 16 bytes (guarded builds only)
    "guarded_max": (4096,),  # default 1 GiB: guard objects up to 4 KiB (guarded builds only)
    "guarded_precise": (1,),  # default 0: put guarded blocks exactly before their guard page
    "guarded_sample_rate": (4000,),  # default 0 here: guard 1 in 4000 allocations, upstream's guarded default (REFUSED)
    "guarded_sample_seed": (42,),  # default 0 (random): a fixed sampling seed
    "generic_collect": (1,),  # default 10000: collect on every generic allocation call, the busiest setting
    "page_reclaim_on_free": (1, -1),  # default 0 (own heap only): reclaim across heaps, and never
    "page_full_retain": (-1, 0),  # default 2: never abandon full pages (the "fifo" preset), and retain none
    "page_max_candidates": (1,),  # default 4: take the first page that fits
    # default 0 (ask the CPU, 47 on x86-64): 48 bits, and 40, below the addresses the OS hands out
    # (malloc_aligned segfaulted with it before the glue rewrite)
    "max_vabits": (48, 40),
    "pagemap_commit": (1,),  # default 0: commit the whole page map up front (read at process start)
    "page_commit_on_demand": (1,),  # default 0: commit page memory on demand
    "page_max_reclaim": (0,),  # default -1 (unlimited): reclaim no pages of the originating heap
    "page_cross_thread_max_reclaim": (0,),  # default 32: reclaim no pages across threads
    # pymimalloc's default 0 (pmi_option_defaults, at import): ask for transparent huge pages again; and 0 from the
    # environment, which makes mimalloc disable them for the whole process
    "allow_thp": (1, 0),
    "minimal_purge_size": (2048,),  # KiB, default 0 (64 KiB): purge in 2 MiB units at least
    # KiB, default 2 GiB: objects over 4 MiB (here the 8 MiB block) come straight from the OS
    "arena_max_object_size": (4096,),
    "arena_is_numa_local": (1,),  # default 0: tie a thread's first arena to its NUMA node
}

CASES: list[tuple[str, int]] = [(name, value) for name, values in NON_DEFAULT.items() for value in values]
SETTABLE_CASES: list[tuple[str, int]] = [
    (name, value) for name, value in CASES if name not in REFUSED and name not in READ_AT_START
]
CHILD_TIMEOUT = 60  # seconds, per child
WORKERS = max(2, min(4, os.cpu_count() or 2))


def _case_id(case: tuple[str, int]) -> str:
    return f"{case[0]}={case[1]}"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Only the option under test may differ from mimalloc's compiled defaults, so the caller's own
    # MIMALLOC_* settings (CI sets MIMALLOC_SHOW_ERRORS=1 for its checked builds) are left out; errors
    # are still caught, through pmi_error_count(). PYTHONWARNINGS could turn the expected RuntimeWarning
    # into an error, so it goes too.
    drop = tuple(k for k in os.environ if k.upper().startswith("MIMALLOC_") or k == "PYTHONWARNINGS")
    return run(args, env=env, drop=drop, timeout=CHILD_TIMEOUT)


def _env_value(name: str, value: int) -> str:
    return f"{value}KiB" if name in KIB_OPTIONS else str(value)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str  # begins "hung for" when the child was killed for hanging past CHILD_TIMEOUT

    def describe(self) -> str:
        status = self.stderr.partition("\n")[0] if self.stderr.startswith("hung for") else describe(self.returncode)
        return f"{status}\n--- stdout (tail) ---\n{self.stdout[-2000:]}\n--- stderr (tail) ---\n{self.stderr[-4000:]}"

    @property
    def finished(self) -> bool:
        return any(line.startswith("SWEEP-CHILD-DONE") for line in self.stdout.splitlines())


def _run_child(mode: str, name: str, value: int, default: int) -> Outcome:
    spec = {"mode": mode, "name": name, "value": value, "default": default,
            "refused": name in REFUSED or (mode == "runtime" and name in READ_AT_START),
            "starved": name in STARVED}
    extra = {f"MIMALLOC_{name.upper()}": _env_value(name, value)} if mode == "environment" else {}
    result = _run([str(CHILDREN / "options_sweep.py"), json.dumps(spec)], extra)
    return Outcome(result.returncode, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def compiled_defaults() -> dict[str, int]:
    """Every option's value in a child with no MIMALLOC_* variable set: mimalloc's compiled defaults."""
    code = "import json, pymimalloc; print(json.dumps(dict(pymimalloc.options.defaults)))"
    result = _run(["-c", code], {})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


_MODES = {"test_set_at_runtime": "runtime", "test_set_in_the_environment": "environment"}


class Children:
    """The sweep's children, run WORKERS at a time; each test waits only for its own."""

    def __init__(self, wanted: list[tuple[str, str, int]], defaults: dict[str, int]) -> None:
        self._defaults = defaults
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="sweep-child")
        self._futures: dict[tuple[str, str, int], Future[Outcome]] = {}
        for key in wanted:
            self._submit(key)

    def _submit(self, key: tuple[str, str, int]) -> Future[Outcome]:
        future = self._futures.get(key)
        if future is None:
            mode, name, value = key
            future = self._futures[key] = self._pool.submit(_run_child, mode, name, value, self._defaults[name])
        return future

    def outcome(self, mode: str, name: str, value: int) -> Outcome:
        return self._submit((mode, name, value)).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def children(request: pytest.FixtureRequest, compiled_defaults: dict[str, int]) -> Iterator[Children]:
    # start every child this session selected from this file at once, in collection order
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        mode = _MODES.get(getattr(item, "originalname", ""))
        if callspec is None or mode is None or getattr(item, "module", None) is not sys.modules[__name__]:
            continue
        name, value = callspec.params["case"]
        wanted.append((mode, name, value))
    runner = Children(wanted, compiled_defaults)
    yield runner
    runner.close()


# -- the table itself ---------------------------------------------------------------------------------


def test_the_table_has_non_default_values_for_every_option(compiled_defaults: dict[str, int]) -> None:
    assert set(NON_DEFAULT) == set(pymimalloc.options), "NON_DEFAULT must list exactly the library's options"
    assert REFUSED <= set(NON_DEFAULT)
    only_defaults = [name for name, values in NON_DEFAULT.items() if all(v == compiled_defaults[name] for v in values)]
    assert only_defaults == [], "these options have no value in the table that differs from this build's default"


# -- refused options, in this process ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_option_raises_and_keeps_its_value(name: str) -> None:
    options = pymimalloc.options
    value = NON_DEFAULT[name][0]
    before = options[name]
    try:
        with pytest.raises(ValueError, match=re.escape(name)):
            options[name] = value
        assert options[name] == before
        with pytest.raises(ValueError, match=re.escape(name)):
            with options.override(**{name: value}):
                pass
        assert options[name] == before
    finally:
        if options[name] != before:  # the refusal is missing: never leave e.g. destroy_on_exit set
            options[name] = before


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_override_with_a_refused_option_sets_nothing(name: str) -> None:
    # override checks every name and value before it sets any (its docstring)
    options = pymimalloc.options
    delay, before = options["purge_delay"], options[name]
    try:
        with pytest.raises(ValueError, match=re.escape(name)):
            with options.override(purge_delay=delay + 1, **{name: NON_DEFAULT[name][0]}):
                pass
        assert (options["purge_delay"], options[name]) == (delay, before)
    finally:
        if options[name] != before:
            options[name] = before
        options["purge_delay"] = delay


@pytest.mark.parametrize("case", SETTABLE_CASES, ids=_case_id)
def test_every_other_option_can_be_set(case: tuple[str, int]) -> None:
    # nothing is allocated while the value is in force: this only checks that it is accepted and reads back
    name, value = case
    options = pymimalloc.options
    before = options[name]
    try:
        options[name] = value
        assert options[name] == value
    finally:
        options[name] = before
    with options.override(**{name: value}):
        assert options[name] == value
    assert options[name] == before


# -- the sweep, each case in a child ------------------------------------------------------------------


def _assert_clean(outcome: Outcome, name: str) -> None:
    assert outcome.returncode == 0 and outcome.finished, outcome.describe()
    stderr = outcome.stderr
    if name in EXPECTED_REPORTS:
        stderr = "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("mimalloc: "))
    if name not in OUTPUT_OPTIONS:
        assert stderr == "", outcome.describe()


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_set_at_runtime(case: tuple[str, int], children: Children) -> None:
    # the child sets the option (or, for a refused one, checks the ValueError and that nothing changed),
    # then runs the scenario; see tests/children/options_sweep.py
    name, value = case
    _assert_clean(children.outcome("runtime", name, value), name)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_set_in_the_environment(case: tuple[str, int], children: Children) -> None:
    name, value = case
    outcome = children.outcome("environment", name, value)
    if name in REFUSED:
        # the import succeeds, the option reads back as its safe default (checked in the child), and stderr
        # says which option was put back: a RuntimeWarning from the import, or the same message from the
        # start-up path when PYMIMALLOC_INSTALL started mimalloc first (CI runs the suite both ways)
        assert outcome.returncode == 0 and outcome.finished, outcome.describe()
        assert f"pymimalloc set mimalloc option '{name}'" in outcome.stderr, outcome.describe()
    elif name in READ_AT_START:
        assert outcome.returncode == 1 and "ImportError" in outcome.stderr, outcome.describe()
        assert f"MIMALLOC_{name.upper()}" in outcome.stderr, outcome.describe()
    elif name in STARVED:
        # nothing reserved: the import raises ImportError that names the option and what to do
        assert outcome.returncode == 1 and "ImportError" in outcome.stderr, outcome.describe()
        assert f"MIMALLOC_{name.upper()}" in outcome.stderr, outcome.describe()
        assert "Segmentation" not in outcome.stderr and "Fatal Python error" not in outcome.stderr, outcome.describe()
    else:
        _assert_clean(outcome, name)
