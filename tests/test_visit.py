from __future__ import annotations

import gc
import threading

import pytest

import pymimalloc
from threads import threads_running

SIZES = [8, 100, 1000, 70000, 1 << 21, 3 << 20, 5 << 20]
# Debug and secure builds pad every block, so a block's size class is larger than the request there.
PADDED = pymimalloc.build_info()["debug"] > 0 or pymimalloc.build_info()["secure"] > 0


def _same_blocks(seen: list[tuple[int, int]], blocks: list[pymimalloc.Block]) -> None:
    expected = sorted((b.address, b.size) for b in blocks if not b.freed)
    assert [address for address, _ in sorted(seen)] == [address for address, _ in expected]
    for (_, found), (_, requested) in zip(sorted(seen), expected):
        assert found == requested or (PADDED and found >= requested)


def _allocate(heap: pymimalloc.Heap) -> list[pymimalloc.Block]:
    # sizes mimalloc uses as they are, so a block's size class equals the requested size
    return [heap.malloc(pymimalloc.good_size(size)) for size in SIZES for _ in range(3)]


@pytest.mark.exact_block_sizes
def test_blocks_report_exactly_the_live_blocks(heap: pymimalloc.Heap) -> None:
    blocks = _allocate(heap)
    assert any(b.size > 2 << 20 for b in blocks)  # huge blocks are included (mimalloc#570)
    _same_blocks([(info.address, info.size) for info in heap.blocks()], blocks)
    for block in blocks[::2]:
        block.free()
    _same_blocks([(info.address, info.size) for info in heap.blocks()], blocks)


def test_areas_describe_the_blocks(heap: pymimalloc.Heap) -> None:
    blocks = _allocate(heap)
    areas = list(heap.areas())
    assert sum(area.used for area in areas) == len(blocks)
    for area in areas:
        assert area.reserved >= area.committed > 0 and area.full_block_size >= area.block_size > 0
    for info in heap.blocks():
        assert info.area.address <= info.address < info.area.address + info.area.reserved
        assert info.size == info.area.block_size


def test_visit_calls_back_for_areas_then_their_blocks(heap: pymimalloc.Heap) -> None:
    blocks = _allocate(heap)
    calls: list[tuple[pymimalloc.Area, pymimalloc.BlockInfo | None]] = []
    assert heap.visit(lambda area, info: calls.append((area, info)) or True) is True
    assert sorted(i.address for _, i in calls if i is not None) == sorted(b.address for b in blocks)
    current = None
    for area, info in calls:
        if info is None:
            current = area
        else:
            assert area is current is info.area
    area_calls: list[object] = []
    assert heap.visit(lambda area, info: area_calls.append(info) or True, blocks=False)
    assert area_calls and all(info is None for info in area_calls)


def test_a_falsy_return_stops_the_walk(heap: pymimalloc.Heap) -> None:
    _blocks = _allocate(heap)
    calls: list[object] = []

    def stop_at_third(area, info) -> bool:
        calls.append(info)
        return len(calls) < 3

    assert heap.visit(stop_at_third) is False
    assert len(calls) == 3


def test_an_exception_in_the_callback_propagates_and_thaws(heap: pymimalloc.Heap) -> None:
    _blocks = _allocate(heap)

    class Boom(Exception):
        pass

    def explode(area, info):
        raise Boom("from the callback")

    with pytest.raises(Boom, match="from the callback"):
        heap.visit(explode)
    heap.malloc(8).free()  # the heap is usable again


def test_allocating_or_freeing_in_the_callback_raises_runtime_error(heap: pymimalloc.Heap) -> None:
    blocks = _allocate(heap)
    errors: list[str] = []

    def misbehave(area, info) -> bool:
        for attempt in (lambda: heap.malloc(8), lambda: blocks[0].free(), lambda: heap.realloc(blocks[1], 9),
                        lambda: heap.close(), lambda: heap.destroy(), lambda: heap.collect()):
            try:
                attempt()
            except RuntimeError:
                errors.append("refused")
        return True

    assert heap.visit(misbehave)
    assert errors and set(errors) == {"refused"} and len(errors) % 6 == 0
    assert not blocks[0].freed and not blocks[1].freed and not heap.closed
    assert sorted(i.address for i in heap.blocks()) == sorted(b.address for b in blocks)


def test_blocks_dropped_during_a_visit_are_freed_after_it(heap: pymimalloc.Heap) -> None:
    blocks = _allocate(heap)
    count = len(blocks)

    def drop(area, info) -> bool:
        if blocks:
            blocks.pop()
            gc.collect()
        return True

    heap.visit(drop)
    assert heap.live_blocks == len(blocks) < count


@pytest.mark.exact_block_sizes
def test_snapshot_freezes_the_heap_and_goes_stale(heap: pymimalloc.Heap) -> None:
    blocks = _allocate(heap)
    with heap.snapshot() as snap:
        assert snap.live_blocks == len(blocks)
        assert snap.live_bytes == sum(b.size for b in blocks) or (PADDED and snap.live_bytes > 0)
        assert len(snap.areas) >= len(SIZES)
        with pytest.raises(RuntimeError):
            heap.malloc(1)
        with pytest.raises(RuntimeError):
            blocks[0].free()
        blocks.pop()  # dropped: its memory must stay valid until the snapshot ends
        assert heap.live_blocks == len(blocks) + 1
        with heap.snapshot() as inner:  # nesting works
            assert inner.live_blocks == snap.live_blocks
        with pytest.raises(RuntimeError):
            heap.malloc(1)  # still frozen by the outer snapshot
        assert not snap.stale
    assert snap.stale and heap.live_blocks == len(blocks)
    heap.malloc(1).free()
    with pytest.raises(RuntimeError):
        with snap:
            pass
    assert "stale" in repr(snap)


def test_snapshot_under_threads() -> None:
    heap = pymimalloc.Heap()
    stop = threading.Event()
    refused: list[int] = []
    keep: list[pymimalloc.Block] = []
    errors: list[BaseException] = []

    def churn() -> None:
        while not stop.is_set():
            try:
                keep.append(heap.malloc(64))
                if len(keep) > 50:
                    del keep[:25]  # frees from this thread, deferred while frozen
            except RuntimeError:
                refused.append(1)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    with threads_running(churn, churn, churn):
        try:
            for _ in range(50):
                with heap.snapshot() as snap:
                    addresses = [info.address for info in snap.blocks]
                    assert len(set(addresses)) == len(addresses)
                    for address in addresses:
                        assert heap.contains(address)  # every address stays valid while frozen
        finally:
            stop.set()
    assert errors == []
    keep.clear()
    assert heap.live_blocks == 0
    heap.destroy()


def test_walking_a_closed_heap_raises() -> None:
    heap = pymimalloc.Heap()
    heap.close()
    for walk in (heap.areas, heap.blocks, lambda: heap.visit(lambda a, b: True)):
        with pytest.raises(ValueError):
            walk()
    with pytest.raises(ValueError):
        with heap.snapshot():
            pass


def test_a_dropped_snapshot_thaws_its_heap(heap: pymimalloc.Heap) -> None:
    snap = heap.snapshot()
    snap.__enter__()  # entered by hand, never exited
    with pytest.raises(RuntimeError):
        heap.malloc(8)
    del snap
    gc.collect()
    heap.malloc(8).free()  # the heap thawed when the snapshot went


def test_areas_and_blocks_are_lists_to_index_and_read_twice(heap: pymimalloc.Heap) -> None:
    kept = [heap.malloc(64) for _ in range(3)]
    areas, blocks = heap.areas(), heap.blocks()
    assert isinstance(areas, list) and isinstance(blocks, list)
    assert areas[:1] and len(blocks) == len(kept)
    assert list(blocks) == list(blocks)
    for block in kept:
        block.free()


def test_block_infos_made_in_c_are_the_dataclass_s_own(heap: pymimalloc.Heap) -> None:
    """A walk's BlockInfos come from C (pymimalloc._core.block_infos): equal, hashable, copyable and picklable as
    the frozen dataclass made in Python, and still frozen."""
    import copy
    import dataclasses
    import pickle

    blocks = [heap.malloc(size) for size in (8, 8, 1000)]
    infos = heap.blocks()
    assert len(infos) == len(blocks)
    for info in infos:
        made = pymimalloc.BlockInfo(info.address, info.size, info.area)
        assert type(info) is pymimalloc.BlockInfo and info == made and hash(info) == hash(made)
        assert pickle.loads(pickle.dumps(info)) == info == copy.deepcopy(info)
        assert dataclasses.asdict(info)["address"] == info.address
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.size = 1  # type: ignore[misc]


class _OnlyAddress:
    __slots__ = ("address",)


class _SizeIsAProperty:
    __slots__ = ("address", "area")

    @property
    def size(self) -> int:
        return 0


class _SubclassOfBlockInfo(pymimalloc.BlockInfo):
    __slots__ = ()


@pytest.mark.parametrize("args, exception", [
    pytest.param((dict, [], [], []), TypeError, id="a class without slots"),
    pytest.param((_OnlyAddress, [], [], []), TypeError, id="a class without all three slots"),
    pytest.param((_SizeIsAProperty, [], [], []), TypeError, id="a property, not a slot"),
    pytest.param((_SubclassOfBlockInfo, [], [], []), TypeError, id="slots of a base class"),
    pytest.param((42, [], [], []), TypeError, id="not a class"),
    pytest.param((pymimalloc.BlockInfo, [], [1], []), TypeError, id="lists of two lengths"),
    pytest.param((pymimalloc.BlockInfo, (), [], []), TypeError, id="a tuple for a list"),
    pytest.param((pymimalloc.BlockInfo, [], [1], [0]), IndexError, id="an area index past the areas"),
    pytest.param((pymimalloc.BlockInfo, [], [1], [-1]), IndexError, id="a negative area index"),
    pytest.param((pymimalloc.BlockInfo, [], [1], ["0"]), TypeError, id="an area index that is no int"),
    pytest.param((pymimalloc.BlockInfo, [object()], [], []), AttributeError, id="an area without block_size"),
])
def test_block_infos_refuses_what_no_walk_gives(args: tuple[object, ...], exception: type[BaseException]) -> None:
    """The C maker of a walk's BlockInfos (pymimalloc._core.block_infos) checks its arguments: it writes slots by
    offset, so a class whose three names are not its own object slots is refused rather than written into."""
    from pymimalloc import _core

    with pytest.raises(exception):
        _core.block_infos(*args)  # type: ignore[arg-type]


def test_block_infos_survive_finalizers_that_change_their_lists() -> None:
    """Making BlockInfos allocates, so a collection may run finalizers in the middle: one that empties the lists
    given gets RuntimeError, never a read past their end. (Python 3.13 runs a collection that allocations ask for at
    the interpreter's next check, after the call: there the call completes, and the finalizer runs after it.)"""
    import gc
    import sys

    from pymimalloc import _core

    area = pymimalloc.Area(0, 0, 0, 1, 8, 8)
    areas, addresses, indices = [area], [8 * k for k in range(20_000)], [0] * 20_000

    class Emptier:
        def __del__(self) -> None:
            addresses.clear()
            indices.clear()
            areas.clear()

    def plant() -> None:
        a, b = Emptier(), Emptier()
        a.other, b.other = b, a  # type: ignore[attr-defined]  # a cycle: only the collector frees it

    threshold = gc.get_threshold()
    gc.set_threshold(50)
    try:
        plant()
        if sys.version_info < (3, 13):
            with pytest.raises(RuntimeError, match="changed"):
                _core.block_infos(pymimalloc.BlockInfo, areas, addresses, indices)
        else:
            (made,) = _core.block_infos(pymimalloc.BlockInfo, areas, addresses, indices)
            assert [info.address for info in made] == [8 * k for k in range(20_000)]
        gc.collect()
        assert addresses == indices == areas == []  # the finalizer ran
    finally:
        gc.set_threshold(*threshold)
