"""Allocator micro-benchmarks: C kernels (csrc/pmi_bench.c) over a pymimalloc Heap, mimalloc's default,
pymalloc and glibc malloc, run side by side; and the ``python -m pymimalloc bench`` report."""

from .kernels import ALLOCATORS, PATTERNS, Measurement, Pattern, Suite, measure, plan, run_suite

__all__ = ["ALLOCATORS", "PATTERNS", "Measurement", "Pattern", "Suite", "measure", "plan", "run_suite"]
