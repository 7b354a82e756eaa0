import importlib.util
import sys

# A Python without Distillery's packages (`dvc repro` from a shell where .venv is not active: dvc.yaml runs bare
# `python`) gets one line, not a traceback ending in "No module named 'pydantic'". find_spec imports nothing.
_missing = next((name for name in ("pydantic", "yaml", "numpy", "pandas") if importlib.util.find_spec(name) is None),
                None)
if _missing:
    print(f"distillery: error: {sys.executable} has no {_missing!r}: Distillery's packages are not installed for "
          "this Python; activate the project's environment first (`. .venv/bin/activate`, after `bash "
          "scripts/setup.sh`)", file=sys.stderr)
    sys.exit(4)  # the environment, not the input: exit code 4, never retried (distillery/errors.py)

from distillery.cli import main  # noqa: E402

import signal  # noqa: E402

try:
    code = main()
    # done, or failed with its one line: a Ctrl-C while Python shuts down (after the stage's files are whole) would
    # only turn the exit code into a signal's, and a finished stage into a failed one for DVC; SIGTERM ends it as is
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(code)
except BrokenPipeError:  # `python -m distillery params | head`: the reader has what it wanted
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
    sys.exit(0)
