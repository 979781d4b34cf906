"""The benchmark's error: a benchmark that cannot run or whose inputs are wrong."""
from mmsctl.errors import MmsctlError


class BenchError(MmsctlError):
    """A benchmark that cannot run or whose inputs are wrong."""
