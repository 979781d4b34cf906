"""Moved to :mod:`mmsctl.bench.reference`; this name keeps ``import mmsctl.reference`` and ``python -m mmsctl.reference`` working."""
from mmsctl.bench.reference import *  # noqa: F401,F403
