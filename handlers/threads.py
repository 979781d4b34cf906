"""Per-model thread counts on a server with several models.

MMS 1.1.11 gives every model's workers the same environment (the server's), so
``mmsctl serve`` plans each model's threads over one core budget and passes them
as ``MMSCTL_THREADS=MODEL=N,MODEL=N``. A worker applies its model's count to
``OMP_NUM_THREADS`` before MXNet or onnxruntime is imported (MXNet's OpenMP pool
and onnxruntime's intra-op threads are sized from it), and logs what it applied
as ``model NAME threads N (MMSCTL_THREADS)``. A model the variable does not name
keeps the server's ``OMP_NUM_THREADS``.
"""
import logging
import os
import sys

from .contract import THREADS_ENV
from .errors import ModelLoadFailure

logger = logging.getLogger(__name__)

OMP_ENV = "OMP_NUM_THREADS"


def parse_thread_pairs(value):
    """{model: threads} from ``MODEL=N`` pairs, comma-separated; a bad value fails the load.

    >>> parse_thread_pairs("a=2, b.v1=1")
    {'a': 2, 'b.v1': 1}
    >>> parse_thread_pairs("") == parse_thread_pairs(None) == {}
    True
    >>> try:
    ...     parse_thread_pairs("a=0")
    ... except ModelLoadFailure as err:
    ...     print(err.message)
    MMSCTL_THREADS='a=0': 'a=0' is not MODEL=N with N a whole number from 1 up
    """
    found = {}
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        model, sep, count = entry.rpartition("=")
        model = model.strip()
        if not sep or not model or not count.strip().isdigit() or int(count) < 1:
            raise ModelLoadFailure("%s=%r: %r is not MODEL=N with N a whole number from 1 up"
                                   % (THREADS_ENV, value, entry))
        if model in found:
            raise ModelLoadFailure("%s=%r: model %r is given twice" % (THREADS_ENV, value, model))
        found[model] = int(count)
    return found


def apply_model_threads(model_name, environ=None, modules=None):
    """Set ``OMP_NUM_THREADS`` to this model's count from ``MMSCTL_THREADS``; return the count in
    effect (None when neither variable says). Logged, so a test can read what each worker applied."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    pairs = parse_thread_pairs(environ.get(THREADS_ENV))
    if model_name in pairs:
        environ[OMP_ENV] = str(pairs[model_name])
        source = THREADS_ENV
    else:
        source = OMP_ENV
    threads = environ.get(OMP_ENV)
    late = [name for name in ("mxnet", "onnxruntime") if name in modules]
    logger.info("model %s threads %s (%s, pid %d)%s", model_name, threads or "unset", source, os.getpid(),
                "; %s was imported before, its thread pool may keep its size" % " and ".join(late) if late else "")
    return int(threads) if threads and threads.isdigit() else None
