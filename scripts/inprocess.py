"""Moved to :mod:`mmsctl.bench.inprocess`; this name keeps ``import mmsctl.inprocess`` and ``python -m mmsctl.inprocess`` working."""
from mmsctl.bench.inprocess import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.inprocess import pipeline_main
    sys.exit(pipeline_main())
