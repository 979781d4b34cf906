"""Moved to :mod:`mmsctl.bench.prove_profiles`; this name keeps ``import mmsctl.prove_profiles`` and ``python -m mmsctl.prove_profiles`` working."""
from mmsctl.bench.prove_profiles import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.prove_profiles import main
    sys.exit(main())
