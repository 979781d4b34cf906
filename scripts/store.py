"""The model store as a server sees it: the URL an archive is registered with, the archives checked
before MMS unpacks anything, and each archive unpacked once into the store for MMS to serve in place.
"""
import os
import shutil
import tempfile

from mmsctl.archives import mar

from .errors import ServerError

def model_url(path, model_store):
    """The ``url`` to register an archive of the model store with (its name there)."""
    full = os.path.abspath(path if os.path.isabs(path) else os.path.join(model_store, path))
    return os.path.relpath(full, os.path.abspath(model_store))


UNPACKED_DIR = ".mmsctl-unpacked"


def unpacked_entry(model_store, path):
    """Extract a ``.mar`` once into ``<store>/.mmsctl-unpacked/<name>-<key>/`` and return that
    folder's name relative to the store, for MMS to serve in place.

    MMS 1.1.11 unzips every archive at every start (measured: 1-3.7 s of ResNet-152's
    cold start) and does it without checking entry names (an entry ``../../x`` is
    written outside its folder); a folder in the model store is used as it is. Our
    extraction refuses escaping entries. The key is the archive's size, mtime and
    inode, so a rebuilt archive is extracted again. Returns None when the store is
    not writable (a read-only volume): MMS then unpacks the archive itself.
    """
    full = os.path.join(model_store, path)
    if not os.path.isfile(full) or not os.access(model_store, os.W_OK):
        return None
    info = os.stat(full)
    stem = os.path.splitext(os.path.basename(full))[0]
    entry = os.path.join(UNPACKED_DIR, "%s-%x-%x-%x" % (stem, info.st_size, info.st_mtime_ns, info.st_ino))
    target = os.path.join(model_store, entry)
    if not os.path.isdir(target):
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".%s." % stem, dir=parent)
        try:
            mar.extract(full, tmp)
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(target):  # not a concurrent extraction that won the race
                raise
    return entry


def check_models(profile, models):
    if not os.path.isdir(profile.model_store):
        raise ServerError("model store %s is not a folder" % profile.model_store)
    for name, path in models.items():
        full = path if os.path.isabs(path) else os.path.join(profile.model_store, path)
        if not os.path.isfile(full):
            raise ServerError("model %s: archive %s is not in the model store %s" % (name, path, profile.model_store))
        if model_url(path, profile.model_store).startswith(".."):
            raise ServerError("model %s: archive %s is outside the model store %s: copy it there"
                              % (name, path, profile.model_store))
        if full.endswith(".mar"):
            with mar.open_mar(full):  # refuses escaping and symlink entries before MMS unpacks anything
                pass
