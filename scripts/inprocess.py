"""The in-process pipeline's entry point, ``python -m mmsctl.inprocess`` (what :func:`mmsctl.bench.inprocess.run_level`
starts: a top-level name, so the child runs the module once rather than beside the copy the package imports);
the code lives in :mod:`mmsctl.bench.inprocess`."""
import sys

from mmsctl.bench.inprocess import *  # noqa: F401,F403
from mmsctl.bench.inprocess import pipeline_main

if __name__ == "__main__":
    sys.exit(pipeline_main())
