"""``python -m mmsctl.metrics --state-dir D``: the exporter child of ``mmsctl serve``."""
import sys

from .runner import main

sys.exit(main())
