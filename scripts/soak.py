"""Moved to :mod:`mmsctl.bench.soak`; this name keeps ``import mmsctl.soak`` and ``python -m mmsctl.soak`` working."""
from mmsctl.bench.soak import *  # noqa: F401,F403
