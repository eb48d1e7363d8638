"""Load the compiled module at argv[1] (not the installed one) and print the build information it carries."""

import importlib.util
import sys

spec = importlib.util.spec_from_file_location("pymimalloc._mimalloc", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(module.ffi.string(module.lib.pmi_build_info()).decode())
