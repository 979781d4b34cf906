"""Moved to :mod:`mmsctl.bench.compare`; this name keeps ``import mmsctl.bench_compare`` and ``python -m mmsctl.bench_compare`` working."""
from mmsctl.bench.compare import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.compare import main
    sys.exit(main())
