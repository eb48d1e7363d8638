from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

import pymimalloc
from pymimalloc import _core
from pymimalloc._core import lib
from pymimalloc._core import take_text

from childproc import describe, run


def test_names_come_from_the_library_without_deprecated_ones() -> None:
    printed = take_text(lib.pmi_options_text(), "options")
    names = list(pymimalloc.options)
    assert {"purge_delay", "arena_eager_commit", "page_full_retain", "show_errors"} <= set(names)
    assert not any(name.startswith("deprecated") for name in names)
    for name in names:
        assert f"option '{name}'" in printed
    assert set(pymimalloc.options.defaults) == set(names)


def test_read_and_set_by_name() -> None:
    options = pymimalloc.options
    before = options["purge_delay"]
    try:
        options["purge_delay"] = before + 7
        assert options["purge_delay"] == before + 7
    finally:
        options["purge_delay"] = before
    assert options["purge_delay"] == before == options.defaults["purge_delay"]


@pytest.mark.parametrize("name", ["nope", "mi_option_purge_delay", "deprecated_page_reset", 3])
def test_unknown_names_raise_key_error(name) -> None:
    with pytest.raises(KeyError):
        pymimalloc.options[name]
    with pytest.raises(KeyError):
        pymimalloc.options[name] = 1


def test_a_misspelt_name_gets_the_close_match_and_not_every_name() -> None:
    with pytest.raises(KeyError, match=r"'purge_dely' is not a mimalloc option; did you mean 'purge_delay'\?") as raised:
        with pymimalloc.options.override(purge_dely=0):
            pass
    assert "arena_eager_commit" not in str(raised.value)  # the whole list is left out when a match is found
    with pytest.raises(KeyError, match="did you mean 'page_full_retain'"):
        pymimalloc.options["page_ful_retain"]
    with pytest.raises(KeyError, match="did you mean 'purge_delay'"):
        pymimalloc.options["mi_option_purge_delay"] = 1
    with pytest.raises(KeyError, match="the options are: .*purge_delay") as unrelated:
        pymimalloc.options["zzzz"]
    assert "did you mean" not in str(unrelated.value)
    with pytest.raises(KeyError, match="the options are"):
        pymimalloc.options[3]  # type: ignore[index]


@pytest.mark.parametrize("value", [1.5, "10", None, b"1"])
def test_wrong_value_types_raise_type_error(value) -> None:
    with pytest.raises(TypeError):
        pymimalloc.options["purge_delay"] = value
    with pytest.raises(TypeError):
        with pymimalloc.options.override(purge_delay=value):
            pass


def test_out_of_range_values_raise_value_error() -> None:
    with pytest.raises(ValueError):
        pymimalloc.options["purge_delay"] = 2**63


def test_override_restores_even_after_an_exception() -> None:
    options = pymimalloc.options
    delay, retain = options["purge_delay"], options["page_full_retain"]
    with pytest.raises(ZeroDivisionError):
        with options.override(purge_delay=0, page_full_retain=retain + 3):
            assert (options["purge_delay"], options["page_full_retain"]) == (0, retain + 3)
            1 / 0
    assert (options["purge_delay"], options["page_full_retain"]) == (delay, retain)
    with options.override(purge_delay=5):
        with options.override(purge_delay=6):
            assert options["purge_delay"] == 6
        assert options["purge_delay"] == 5
    assert options["purge_delay"] == delay
    with pytest.raises(KeyError):
        with options.override(purge_delay=0, nope=1):
            pass
    assert options["purge_delay"] == delay  # nothing was set


def test_an_override_is_single_use_and_leaving_twice_restores_once() -> None:
    options = pymimalloc.options
    delay = options["purge_delay"]
    block = options.override(purge_delay=delay + 7)
    assert "new" in repr(block)
    with block as entered:
        assert entered is options and options["purge_delay"] == delay + 7
        options["purge_delay"] = delay + 8  # set inside the block: the block's exit still puts back its own before
        assert "entered" in repr(block)
    assert options["purge_delay"] == delay and "left" in repr(block)
    with pytest.raises(RuntimeError, match="single-use"):
        block.__enter__()
    options["purge_delay"] = delay + 9
    block.__exit__(None, None, None)  # left already: changes nothing
    assert options["purge_delay"] == delay + 9
    options["purge_delay"] = delay


def test_overrides_left_in_any_order_put_back_the_value_from_before_them() -> None:
    """Two blocks left out of order (generators, threads) left the option at the first block's value for good
    (found by review): each option keeps the stack of the blocks that hold it."""
    import threading

    options = pymimalloc.options
    before = options["purge_delay"]
    first, second = options.override(purge_delay=before + 1), options.override(purge_delay=before + 2)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert options["purge_delay"] == before + 2  # the second still holds it
    second.__exit__(None, None, None)
    assert options["purge_delay"] == before

    def block(value: int) -> Iterator[None]:
        with options.override(purge_delay=value):
            yield

    for order in itertools.permutations(range(3)):
        generators = [block(before + 10 * (i + 1)) for i in range(3)]
        for generator in generators:
            next(generator)
        assert options["purge_delay"] == before + 30
        for i in order:
            generators[i].close()
        assert options["purge_delay"] == before, order

    entered, leave = threading.Event(), threading.Event()

    def hold(value: int, first: bool) -> None:
        with options.override(purge_delay=value):
            if first:
                entered.set()
                leave.wait()
            else:
                leave.set()

    threads = [threading.Thread(target=hold, args=(before + 100, True)),
               threading.Thread(target=hold, args=(before + 200, False))]
    threads[0].start()
    entered.wait()
    threads[1].start()
    for thread in threads:
        thread.join()
    assert options["purge_delay"] == before


def test_an_options_scope_built_by_hand_refuses_what_options_refuse() -> None:
    scope = type(pymimalloc.options.override())
    with pytest.raises(ValueError, match="hangs at exit"):
        scope(pymimalloc.options, (pymimalloc.options._index["destroy_on_exit"],), (1,))  # set, it hung every exit (found by review)
    assert pymimalloc.options["destroy_on_exit"] == 0


def test_presets_apply_and_restore() -> None:
    before = pymimalloc.options["page_full_retain"]
    with pymimalloc.options.preset("fifo"):
        assert pymimalloc.options["page_full_retain"] == -1
    assert pymimalloc.options["page_full_retain"] == before
    with pytest.raises(KeyError):
        pymimalloc.options.preset("nope")


def test_fifo_preset_changes_what_mimalloc_does_with_full_medium_pages() -> None:
    # the preset's effect, observed through mimalloc itself rather than timed: without it, full pages of
    # 16 KiB blocks are abandoned to the arena, which mimalloc counts as abandoned pages
    from pymimalloc._core import lib

    def abandoned_after_ring(**values: int) -> int:
        with pymimalloc.options.override(**values):
            heap = pymimalloc.Heap()
            lib.pmi_bench_run_in(lib.PMI_PATTERN_RING, _core.handle(heap), 16384, 0, 20000, 1)
            stats = heap.mimalloc_stats()
            heap.close()
        return int(stats["pages_abandoned"]["total"])

    assert abandoned_after_ring() > 0
    assert abandoned_after_ring(page_full_retain=-1) == 0


FIRST_ARENA = (
    "import pymimalloc\n"
    "pymimalloc.malloc(64)\n"
    "print(pymimalloc.options['arena_reserve'], pymimalloc.process_info().reserved >> 10)\n"
)


@pytest.mark.parametrize("startup", [False, True], ids=["import", "PYMIMALLOC_INSTALL"])
@pytest.mark.parametrize(("environment", "kib"), [(None, 64 * 1024), ("1GiB", 1024 * 1024), ("256MiB", 256 * 1024)])
def test_the_first_arena_is_64_MiB_unless_the_environment_says(startup: bool, environment: str | None,
                                                                 kib: int) -> None:
    """pymimalloc's own default (pmi_option_defaults): mimalloc's 1 GiB committed bitmaps worth 0.2 MiB of
    a small program's RSS. A value from the environment stands, mimalloc's own default too. What mimalloc has
    reserved after a first block (its count, in KiB) is that arena and 2.3 MiB besides, in either start-up path (the
    arena's mapping is not one line of /proc/self/maps in a checked build, whose guard pages split it)."""
    env = {"PYMIMALLOC_INSTALL": "1"} if startup else {}
    if environment is not None:
        env["MIMALLOC_ARENA_RESERVE"] = environment
    drop = tuple(k for k in os.environ if k.upper() in ("MIMALLOC_ARENA_RESERVE", "PYMIMALLOC_INSTALL"))
    result = run(["-c", FIRST_ARENA], env=env, drop=drop)
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    option, reserved = (int(word) for word in result.stdout.split())
    assert option == kib
    assert kib <= reserved < kib + 16 * 1024, reserved


@pytest.mark.parametrize("startup", [False, True], ids=["import", "PYMIMALLOC_INSTALL"])
@pytest.mark.parametrize(("name", "environment", "value"), [
    ("purge_delay", None, 1000), ("purge_delay", "1000", 1000), ("purge_delay", "10", 10),
    ("allow_thp", None, 0), ("allow_thp", "1", 1),
])
def test_pymimalloc_defaults_stand_unless_the_environment_says(startup: bool, name: str, environment: str | None,
                                                                value: int) -> None:
    """The defaults pymimalloc sets for mimalloc (pmi_option_defaults, csrc/pmi_mimalloc.c says why), on both paths
    that start mimalloc: no transparent huge pages, and mimalloc's own 1 s purge delay (a shorter one was measured
    and left out). A value from the environment stands; ``options.defaults`` reports what the process started with."""
    variable = "MIMALLOC_" + name.upper()
    env = {"PYMIMALLOC_INSTALL": "1"} if startup else {}
    if environment is not None:
        env[variable] = environment
    drop = tuple(k for k in os.environ if k.upper() in (variable, "PYMIMALLOC_INSTALL"))
    code = f"import pymimalloc\nprint(pymimalloc.options[{name!r}], pymimalloc.options.defaults[{name!r}])\n"
    result = run(["-c", code], env=env, drop=drop)
    assert result.returncode == 0, describe(result.returncode) + result.stderr
    assert [int(word) for word in result.stdout.split()] == [value, value]
