"""Moved to :mod:`mmsctl.bench.onnx_latency`; this name keeps ``import mmsctl.onnx_latency`` and ``python -m mmsctl.onnx_latency`` working."""
from mmsctl.bench.onnx_latency import *  # noqa: F401,F403

if __name__ == "__main__":
    import sys

    from mmsctl.bench.onnx_latency import main
    sys.exit(main())
