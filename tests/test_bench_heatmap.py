"""The bench report's heatmap and Markdown page (python -m pymimalloc bench --plot/--markdown): what each
cell divides by, fixed colours, and a saved run drawn again. Correctness, not speed."""
from __future__ import annotations

import importlib.util
import json

import pytest

from pymimalloc.bench import ALLOCATORS, Measurement, Suite, plan
from pymimalloc.bench.report import (COLORMAP, RATIO_LIMITS, best_default_ratios, from_json, to_json,
                                     write_markdown, write_plot)

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is the optional plot extra")


def _suite(ns: dict[str, float], cases: list | None = None) -> Suite:
    cases = cases if cases is not None else plan(["pair", "workset"], [64, 4096])
    return Suite([Measurement(c, a, t, t, t, (t,)) for c in cases for a, t in ns.items()], repeat=1, quick=True)


def test_each_cell_is_divided_by_the_faster_default() -> None:
    ratios = best_default_ratios(_suite({"heap": 5.0, "pymimalloc": 40.0, "mimalloc": 4.0,
                                         "pymalloc": 10.0, "glibc": 8.0}))
    assert len(ratios) == 3  # pair 64 B, pair 4 KiB, workset
    for row in ratios.values():
        assert row == {"heap": 0.625, "pymimalloc": 5.0, "mimalloc": 0.5, "pymalloc": 1.25, "glibc": 1.0}


def test_cases_without_a_default_are_left_out() -> None:
    assert best_default_ratios(_suite({"heap": 5.0, "mimalloc": 4.0})) == {}


def test_a_saved_run_reads_back_as_the_same_suite() -> None:
    suite = _suite({a: float(i + 1) for i, a in enumerate(ALLOCATORS)})
    again = from_json(json.loads(json.dumps(to_json(suite))))
    assert again.measurements == suite.measurements and again.repeat == suite.repeat


@needs_matplotlib
def test_the_colours_are_fixed_whatever_the_other_cells(tmp_path) -> None:
    """The same ratio gets the same colour in two runs with different ranges: fixed limits, fixed map."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    norm = LogNorm(*RATIO_LIMITS, clip=True)
    assert norm(1.0) == pytest.approx(0.5)  # centred at 1.0
    assert norm(RATIO_LIMITS[0] / 10) == 0 and norm(RATIO_LIMITS[1] * 10) == 1  # clipped beyond the limits
    assert colormaps[COLORMAP](0.5)[:3] == pytest.approx((0.97, 0.97, 0.97), abs=0.01)  # near white at 1.0
    cases = plan(["pair"], [64])
    for ns in ({"heap": 1.0, "pymalloc": 1.0, "glibc": 2.0}, {"heap": 100.0, "pymalloc": 100.0, "glibc": 0.1}):
        png = tmp_path / f"{len(ns)}-{ns['glibc']}.png"
        write_plot(_suite(ns, cases), str(png))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_markdown_page_names_its_command_and_holds_both_tables(tmp_path) -> None:
    page = tmp_path / "bench.md"
    write_markdown(_suite({"heap": 5.0, "pymalloc": 10.0, "glibc": 8.0}), str(page),
                   "python -m pymimalloc bench --markdown bench.md", plot="bench.png")
    text = page.read_text()
    assert "`python -m pymimalloc bench --markdown bench.md`" in text
    assert "![" in text and "](bench.png)" in text
    assert "| pair 64 B " in text and "| 0.62 " in text  # heap / glibc's 8.0
    assert text.rstrip().splitlines()[-1].startswith("summary: a Heap was faster than pymalloc")
