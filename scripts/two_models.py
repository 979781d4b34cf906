"""Moved to :mod:`mmsctl.bench.two_models`; this name keeps ``import mmsctl.two_models`` and ``python -m mmsctl.two_models`` working."""
from mmsctl.bench.two_models import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.two_models import main
    sys.exit(main())
