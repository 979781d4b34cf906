"""Moved to :mod:`mmsctl.bench.sweep`; this name keeps ``import mmsctl.sweep`` and ``python -m mmsctl.sweep`` working."""
from mmsctl.bench.sweep import *  # noqa: F401,F403
