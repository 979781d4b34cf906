"""Moved to :mod:`mmsctl.bench.limit`; this name keeps ``import mmsctl.limit`` and ``python -m mmsctl.limit`` working."""
from mmsctl.bench.limit import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.limit import child_main
    sys.exit(child_main())
