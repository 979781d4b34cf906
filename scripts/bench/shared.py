"""What the ``mmsctl bench`` scenarios share: the request body, the work folder's model store, the archive
to serve, an aligned Markdown table and progress lines on stderr.

>>> print(aligned_table(("a", "bb"), [("xyz", "1")]))
| a   | bb |
|-----|----|
| xyz | 1  |
"""
import os
import sys

from mmsctl.archives import mxnet_checkpoint
from mmsctl.errors import UsageError
from mmsctl.files import read_regular
from mmsctl.quickstart import bundled_image

from .random_resnet import build_random_resnet

#: The models a scenario can build and serve (resnet152 has random, seeded weights).
ARCHIVES = ("efficientnet-lite0", "resnet152")


def request_body(path=None):
    """The bytes every request sends: the file ``path``, or scikit-image's chelsea.png (a CC0 cat photo)."""
    path = path or bundled_image()
    try:
        return read_regular(path)
    except OSError as err:
        raise UsageError("cannot read the request body %s: %s" % (path, err.strerror or err))


def model_store(workdir, folder=None):
    """The absolute model store: ``folder`` when given, else ``workdir/store``; created if missing."""
    store = os.path.abspath(folder or os.path.join(workdir, "store"))
    os.makedirs(store, exist_ok=True)
    return store


def build_archive(kind, store):
    """Archive one of :data:`ARCHIVES` into ``store`` (overwriting); its path."""
    if kind == "resnet152":
        return build_random_resnet(store, layers=152, name="resnet152", force=True)
    return mxnet_checkpoint.build_efficientnet_lite0(store, force=True)


def aligned_table(header, lines):
    """A Markdown table whose columns are padded to their widest cell (readable as plain text too)."""
    lines = [tuple(header)] + [tuple(line) for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


def message(text):
    """A progress line on stderr (stdout keeps the scenario's result)."""
    print(text, file=sys.stderr, flush=True)
