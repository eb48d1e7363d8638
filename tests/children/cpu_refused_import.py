"""Import pymimalloc on a CPU that lacks a feature: _cpu.py reads the /proc/cpuinfo named by argv[1] instead of the
real one. Prints whether the import was refused and whether the compiled module was loaded."""

import importlib.util
import os
import sys

package = importlib.util.find_spec("pymimalloc")
spec = importlib.util.spec_from_file_location("pymimalloc._cpu",
                                              os.path.join(package.submodule_search_locations[0], "_cpu.py"))
cpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpu)
real = cpu.cpu_flags
cpu.cpu_flags = lambda cpuinfo="/proc/cpuinfo": real(sys.argv[1])
sys.modules["pymimalloc._cpu"] = cpu
try:
    import pymimalloc
except ImportError as error:
    print("refused:", error)
print("compiled module loaded:", "pymimalloc._mimalloc" in sys.modules)
