"""Moved to :mod:`mmsctl.bench.compare_handlers`; this name keeps ``import mmsctl.bench_compare`` and ``python -m mmsctl.bench_compare`` working."""
from mmsctl.bench.compare_handlers import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.compare_handlers import main
    sys.exit(main())
