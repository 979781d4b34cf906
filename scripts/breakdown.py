"""Moved to :mod:`mmsctl.bench.breakdown`; this name keeps ``import mmsctl.breakdown`` and ``python -m mmsctl.breakdown`` working."""
from mmsctl.bench.breakdown import *  # noqa: F401,F403
