from __future__ import annotations

import gc
import re
import tracemalloc

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name

import pymimalloc
from childproc import run_program
from threads import run_threads

NUMPY_TRACEMALLOC_DOMAIN = 389047  # numpy traces the data of every array here, whatever handler made it


def test_constructors_put_the_data_in_the_heap(heap: pymimalloc.Heap) -> None:
    source = np.arange(12.0).reshape(3, 4)
    arrays = {
        "empty": heap.empty((3, 4)),
        "zeros": heap.zeros(5, dtype=np.int32),
        "ones": heap.ones((2, 2), order="F"),
        "full": heap.full(7, 2.5),
        "empty_like": heap.empty_like(source),
        "zeros_like": heap.zeros_like(source),
        "asarray": heap.asarray(source),
    }
    for name, array in arrays.items():
        assert get_handler_name(array) == pymimalloc.HANDLER_NAME, name
        assert array in heap and pymimalloc.heap_of(array) is heap, name
    assert arrays["zeros"].dtype == np.int32 and not arrays["zeros"].any()
    assert arrays["ones"].flags.f_contiguous and (arrays["ones"] == 1).all()
    assert (arrays["full"] == 2.5).all() and arrays["empty_like"].shape == (3, 4)
    assert (arrays["asarray"] == source).all() and not np.shares_memory(arrays["asarray"], source)
    assert heap.live_blocks == len(arrays)


def test_asarray_always_copies(heap: pymimalloc.Heap) -> None:
    inside = heap.zeros(4)
    copy = heap.asarray(inside)
    copy[0] = 1
    assert inside[0] == 0


def test_zeros_are_zero_even_on_reused_memory(heap: pymimalloc.Heap) -> None:
    for _ in range(5):
        dirty = heap.empty(1 << 16)
        dirty.fill(7.0)
        del dirty
        assert not heap.zeros(1 << 16).any()


def test_numpy_allocator_covers_every_array_and_restores(heap: pymimalloc.Heap) -> None:
    before = np.empty(1)
    with heap.numpy_allocator() as same:
        assert same is heap
        a = np.arange(1000, dtype=np.float64)
        b = (a * 2 + 1)  # temporaries too
        assert get_handler_name(a) == get_handler_name(b) == pymimalloc.HANDLER_NAME
        assert a in heap and b in heap
    after = np.empty(1)
    assert get_handler_name(after) == get_handler_name(before) != pymimalloc.HANDLER_NAME
    assert after not in heap


def test_nested_and_exception_exited_allocators() -> None:
    with pymimalloc.Heap() as outer, pymimalloc.Heap() as inner:
        with pytest.raises(ZeroDivisionError):
            with outer.numpy_allocator():
                with inner.numpy_allocator():
                    assert np.ones(3) in inner
                    with pytest.raises(ZeroDivisionError):
                        with outer.numpy_allocator():
                            assert np.ones(3) in outer
                            1 / 0
                    assert np.ones(3) in inner  # restored after the exception
                assert np.ones(3) in outer
                1 / 0
        assert np.ones(3) not in outer and np.ones(3) not in inner
        gc.collect()


def test_views_belong_to_the_base_arrays_heap(heap: pymimalloc.Heap) -> None:
    base = heap.zeros((100, 100))
    for view in (base[10:], base[::3, ::7], base.T, base[50, 50:51], base.reshape(-1)[999:]):
        assert view in heap and pymimalloc.heap_of(view) is heap


def test_arrays_outlive_their_heap() -> None:
    heap = pymimalloc.Heap()
    array = heap.full(1000, 3.0)
    view = array[500:]
    del heap  # the Heap object goes; numpy keeps the handler and thus the heap's context
    gc.collect()
    assert (view == 3.0).all()
    array2 = view.copy()  # a plain numpy array
    del array, view
    gc.collect()
    assert (array2 == 3.0).all()


def test_close_with_live_arrays_keeps_them_and_destroy_refuses(heap: pymimalloc.Heap) -> None:
    array = heap.ones(10_000)
    assert heap.live_bytes >= array.nbytes  # live_bytes counts array data
    with pytest.raises(BufferError):
        heap.destroy()
    heap.close()
    assert heap.closed and (array == 1).all()
    array.resize(20_000, refcheck=False)  # numpy reallocs data whose heap is closed: still fine
    assert array[:10_000].sum() == 10_000
    del array
    gc.collect()
    assert (heap.live_blocks, heap.live_bytes) == (0, 0)


def test_close_releases_everything_when_no_array_is_alive() -> None:
    heap = pymimalloc.Heap()
    address = heap.empty(1 << 20).__array_interface__["data"][0]
    gc.collect()
    assert heap.live_blocks == 0
    heap.destroy()
    assert pymimalloc.heap_of(address) is None


def test_constructors_on_a_closed_or_frozen_heap() -> None:
    heap = pymimalloc.Heap()
    with heap.snapshot():
        with pytest.raises(RuntimeError):
            heap.empty(10)
    heap.close()
    with pytest.raises(ValueError):
        heap.zeros(10)
    with pytest.raises(ValueError):
        with heap.numpy_allocator():
            pass
    # every constructor, also those numpy runs itself with the heap's handler set (which a context that still names
    # a closed heap's handler gets the C library's memory from): a review found these returning such arrays
    made = [lambda: heap.ones(4), lambda: heap.full(4, 7), lambda: heap.asarray([1, 2]),
            lambda: heap.zeros_like(np.ones(3)), lambda: heap.empty_like(np.ones(3)),
            lambda: heap.empty(3, dtype=object), lambda: heap.zeros(3, dtype=object), lambda: heap.empty(3)]
    for make in made:
        with pytest.raises(ValueError, match="the heap is closed"):
            make()


def test_a_constructor_during_which_the_heap_closes_raises() -> None:
    """The heap closes inside the call (here, while numpy fills the array): ValueError, and the array is dropped."""
    heap = pymimalloc.Heap()

    class ClosesTheHeap:
        def __float__(self) -> float:
            heap.close()
            return 1.0

    with pytest.raises(ValueError, match="the heap is closed"):
        heap.full(4, ClosesTheHeap(), dtype=float)
    assert heap.closed


def test_heap_cannot_close_inside_its_numpy_allocator(heap: pymimalloc.Heap) -> None:
    with heap.numpy_allocator():
        with pytest.raises(RuntimeError):
            heap.close()
    heap.close()
    assert heap.closed


def test_arrays_freed_in_other_threads() -> None:
    heap = pymimalloc.Heap()
    arrays = [heap.empty(n) for n in (10, 1000, 100_000) for _ in range(50)]
    mid = len(arrays) // 2
    first, second = arrays[:mid], arrays[mid:]
    del arrays
    run_threads(first.clear)
    heap.close()  # second still alive: the heap is destroyed when its last array is freed
    run_threads(second.clear)
    gc.collect()
    assert (heap.live_blocks, heap.live_bytes) == (0, 0)


def test_threads_share_a_heap_for_arrays() -> None:
    heap = pymimalloc.Heap()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with heap.numpy_allocator():
                for _ in range(200):
                    a = np.ones(1000) + np.arange(1000)
                    assert a in heap
                    (a * 2).sum()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(work, work, work, work)
    assert errors == []
    gc.collect()
    assert heap.live_blocks == 0
    heap.destroy()


def test_tracemalloc_reports_blocks_in_our_domain_and_array_data_once(heap: pymimalloc.Heap) -> None:
    ours = tracemalloc.DomainFilter(True, pymimalloc.TRACEMALLOC_DOMAIN)
    numpys = tracemalloc.DomainFilter(True, NUMPY_TRACEMALLOC_DOMAIN)
    tracemalloc.start()
    try:
        block = heap.malloc(12345)
        array = heap.empty(50_000, dtype=np.uint8)
        snapshot = tracemalloc.take_snapshot()
        assert sorted(trace.size for trace in snapshot.filter_traces([ours]).traces) == [12345]
        assert [t.size for t in snapshot.filter_traces([numpys]).traces if t.size >= 50_000] == [50_000]
        del block, array
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        assert not snapshot.filter_traces([ours]).traces
        assert not [t for t in snapshot.filter_traces([numpys]).traces if t.size >= 50_000]
    finally:
        tracemalloc.stop()


def test_subprocess_exits_cleanly_with_live_heap_arrays() -> None:
    result = run_program("arrays_exit_with_live_arrays.py", timeout=120, check_mimalloc_errors=False)
    assert result.stdout == "ok\n"


def test_empty_and_zeros_are_what_numpy_makes_under_the_handler(heap: pymimalloc.Heap) -> None:
    from numpy._core.multiarray import get_handler_name

    for make in (heap.empty, heap.zeros):
        array = make((3, 5), np.float32, "F")
        assert array.shape == (3, 5) and array.dtype == np.float32 and array.flags.f_contiguous
        assert array.flags.owndata and get_handler_name(array) == "pymimalloc"
        assert array in heap and pymimalloc.heap_of(array) is heap
    assert not heap.zeros(1000).any()
    assert heap.empty(0).size == 0
    grown = heap.empty(10)
    grown.resize(100_000, refcheck=False)  # numpy reallocs through the heap's handler
    assert grown in heap and heap.live_bytes >= 800_000
    objects = heap.empty(3, object)  # numpy initialises these itself (the handler route)
    assert list(objects) == [None, None, None] and objects in heap
    with pytest.raises(ValueError):
        heap.empty(-1)
    del grown, objects, array
    assert heap.live_bytes == 0



def test_the_numpy_handler_is_owned_by_c_and_cannot_be_replaced(heap: pymimalloc.Heap) -> None:
    # heap.empty builds arrays in C from the heap's handler capsule: Python can read it, never plant one
    heap.empty(1)
    handler = heap._numpy_handler()
    assert handler is heap._numpy_handler()
    with pytest.raises(AttributeError):
        heap._numpy_handler = None  # type: ignore[method-assign]
    assert heap.empty(10).shape == (10,)




@pytest.mark.parametrize("order", ["K", "A", "k", "X", 1])
@pytest.mark.parametrize("make", ["empty", "zeros"])
def test_order_is_validated_exactly_as_numpy_does(heap: pymimalloc.Heap, order: object, make: str) -> None:
    with pytest.raises((ValueError, TypeError)) as numpy_error:
        getattr(np, make)(3, order=order)
    for _ in range(2):  # the first call takes the Python path (no handler yet), the second the C one
        with pytest.raises(type(numpy_error.value), match=re.escape(str(numpy_error.value))):
            getattr(heap, make)(3, order=order)


@pytest.mark.parametrize("order", ["C", "F", "c", "f", None])
def test_orders_numpy_accepts_are_honoured(heap: pymimalloc.Heap, order: str | None) -> None:
    expected = np.empty((2, 3), order=order)  # type: ignore[call-overload]
    for _ in range(2):
        made = heap.empty((2, 3), order=order)
        assert made.flags.f_contiguous == expected.flags.f_contiguous and made.flags.c_contiguous == expected.flags.c_contiguous


def test_contexts_that_keep_the_handler_of_a_closed_heap_allocate_from_the_c_library() -> None:
    result = run_program("numpy_handler_of_a_closed_heap.py")
    assert result.stdout.strip() == "OK"
