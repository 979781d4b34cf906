"""Moved to :mod:`mmsctl.bench.request_costs`; this name keeps ``import mmsctl.request_costs`` and ``python -m mmsctl.request_costs`` working."""
from mmsctl.bench.request_costs import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.request_costs import main
    sys.exit(main())
