"""A pyperf script whose workers record their allocator evidence (evidence.py) in the run's metadata, under
"pmc_evidence"; run by pyperf_compare.py with the options its benchmarks get."""

import json
import sys

import pyperf

from evidence import evidence

runner = pyperf.Runner()
if "--worker" in sys.argv:
    runner.metadata["pmc_evidence"] = json.dumps(evidence(), sort_keys=True)
runner.bench_func("pmc_probe", lambda: None)
