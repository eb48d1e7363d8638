"""The script and module that tests/test_cli.py runs with python and with python -m pymimalloc run (copied into a
fresh folder as prog.py): prints how it was started; raises, exits or is interrupted (SIGINT) as its last argument
says."""

import os
import signal
import sys

print(sys.argv, repr(sys.path[0]), __name__, __spec__ is None)
if sys.argv[-1] == "fail":
    {}.fail
if sys.argv[-1] == "exit":
    sys.exit(7)
if sys.argv[-1] == "interrupt":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a job started in the background ignores SIGINT
    os.kill(os.getpid(), signal.SIGINT)
