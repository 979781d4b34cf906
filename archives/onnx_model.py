"""Validate an ONNX model and archive it for onnxruntime or MXNet.

``mmsctl archive onnx`` checks, before anything is written: the file parses, passes
``onnx.checker`` and strict shape inference, every input and output is a tensor of a
type the handlers serve, onnxruntime loads it and a forward pass on zeros works. With a
synset the archive is an image classifier (served by the MXNet image handler's code;
its input and outputs must have a batch axis), without one a tensor model speaking the
Open Inference Protocol v2, batchable or served as it is (``batching.py`` decides and
``signature.json`` records which, and why).

Engines: ``onnxruntime`` archives the .onnx file itself. ``mxnet`` converts it at build
time, through MXNet's ONNX importer, into a symbol + params checkpoint that the plain
MXNet engine serves (CPU, GPU and Elastic Inference alike); the conversion is checked
against onnxruntime on a random input and refused if the answers differ.

The other way round, :func:`from_mxnet_checkpoint` exports an MXNet checkpoint to ONNX
for ``mmsctl archive resnet --engine onnxruntime``.
"""
import contextlib
import json
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from mmsctl.files import read_regular

from . import batching, builder, trials
from .trials import first_line as _first_line, onnxruntime_runner, ort_module as _ort
from .onnx_signature import NUMPY_TYPES, onnx_module, opsets, read_signature, tensor_spec
from .errors import InvalidInput

logger = logging.getLogger(__name__)

ENGINES = ("onnxruntime", "mxnet")
MODEL_FILE = "model.onnx"
SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"

#: MXNet 1.9.1's exporter writes opset-13 operators (its newest translation table) but
#: stamps the model with onnx's newest opset; the stamp is set back to what it wrote.
MXNET_EXPORT_OPSET = 13

#: Agreement required between two engines on the same input (answers are probabilities).
TOLERANCE = 1e-4

@dataclass(frozen=True)
class OnnxConfig(builder.ImageOptions):
    """Options of ``mmsctl archive onnx``; the image options apply only with a synset."""

    name: str
    model: str
    synset: Optional[str] = None
    engine: str = "onnxruntime"
    export_path: str = "."
    input_shape: Optional[List[int]] = None
    #: seconds the build-time forward passes on made-up inputs may take (in a child process)
    trial_timeout: float = trials.DEFAULT_TIMEOUT


# -- reading and checking ---------------------------------------------------------------
def load_model(path):
    """Parse an .onnx file (weights stored in external files are refused)."""
    onnx = onnx_module()
    if not os.path.isfile(path):
        raise InvalidInput("ONNX model %s does not exist" % path)
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, OSError) as err:
        raise InvalidInput("%s is not an ONNX model: %s: %s" % (path, type(err).__name__, _first_line(err)))
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidInput("%s keeps weight %s in an external file: save it as one file "
                               "(onnx.save(model, path, save_as_external_data=False))" % (path, tensor.name))
    return model


def check_model(model, path):
    """onnx.checker + strict shape inference; returns the model with inferred shapes."""
    onnx = onnx_module()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise InvalidInput("%s fails onnx.checker: %s" % (path, _first_line(err)))
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as err:
        raise InvalidInput("%s fails ONNX shape inference: %s" % (path, _first_line(err)))


def example_feeds(inputs, batch=None, seed=None):
    """Inputs for a trial forward pass: zeros, or with ``seed`` standard normal floats and small ints."""
    shapes = batching.example_shapes(inputs, batch or batching.TRIAL_BATCH)
    return batching.make_feeds(inputs, shapes, NUMPY_TYPES, seed)


def run_onnxruntime(model_bytes, feeds, path):
    """Outputs ``{name: array}`` of one onnxruntime forward pass on the CPU."""
    return onnxruntime_runner(model_bytes, path)(feeds)


def dry_run(run, inputs, outputs, path):
    """Run an image classifier on zeros; every output must keep the batch axis. Returns the outputs."""
    feeds = example_feeds(inputs)
    batch = next(iter(feeds.values())).shape[0]
    values = run(feeds)
    for spec in outputs:
        value = values[spec["name"]]
        if value.ndim == 0 or value.shape[0] != batch:
            raise InvalidInput("%s: output %r has shape %s for a batch of %d: every output needs the batch "
                               "as its first axis" % (path, spec["name"], list(value.shape), batch))
    return values


def compare(expected, got, what, advice="use --engine onnxruntime"):
    """Refuse when two engines' outputs differ by more than TOLERANCE (absolute + relative)."""
    for name, want in expected.items():
        have = np.asarray(got[name], dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if have.shape != want.shape:
            raise InvalidInput("%s: output %r has shape %s, onnxruntime gives %s" % (what, name, have.shape,
                                                                                    want.shape))
        if not np.allclose(have, want, rtol=TOLERANCE, atol=TOLERANCE):
            raise InvalidInput("%s: output %r differs from onnxruntime by up to %.3g (allowed %g): the "
                               "conversion is wrong for this model%s"
                               % (what, name, float(np.max(np.abs(have - want))), TOLERANCE,
                                  "; " + advice if advice else ""))


# -- MXNet engine: ONNX -> symbol + params at build time ----------------------------------
def _mx():
    try:
        import mxnet as mx
    except ImportError:
        raise InvalidInput("--engine mxnet needs MXNet in the building environment: run scripts/bootstrap.sh")
    return mx


def mxnet_unsupported(model):
    """Operators of ``model`` that MXNet 1.9.1's ONNX importer cannot convert, sorted."""
    from mxnet.contrib.onnx.onnx2mx._import_helper import _convert_map
    return sorted({"%s%s" % (node.domain + "." if node.domain not in ("", "ai.onnx") else "", node.op_type)
                   for node in model.graph.node
                   if node.domain not in ("", "ai.onnx") or node.op_type not in _convert_map})


def for_mxnet_importer(model):
    """A copy of ``model`` rewritten into the older ONNX conventions MXNet's importer expects.

    Every initializer is also listed in ``graph.input`` (else a KeyError), and every Conv
    carries ``kernel_shape`` (optional in ONNX, read unconditionally by the importer).
    """
    onnx = onnx_module()
    from onnx import helper
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    listed = {value.name for value in graph.input}
    for tensor in graph.initializer:
        if tensor.name not in listed:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and not any(a.name == "kernel_shape" for a in node.attribute):
            weight = weights.get(node.input[1]) if len(node.input) > 1 else None
            if weight is None:
                raise InvalidInput("operator %s (node %r) takes its weight %r from another node and has no "
                                   "kernel_shape: MXNet's importer cannot convert it; use --engine onnxruntime"
                                   % (node.op_type, node.name, node.input[1] if len(node.input) > 1 else "?"))
            node.attribute.append(helper.make_attribute("kernel_shape", list(weight.dims[2:])))
    return copy


def to_mxnet_checkpoint(model, inputs, outputs, folder, path):
    """Convert to ``folder/model-symbol.json`` + ``model-0000.params``; check against onnxruntime."""
    mx = _mx()
    unsupported = mxnet_unsupported(model)
    if unsupported:
        raise InvalidInput("%s uses operator%s %s, which MXNet's ONNX importer cannot convert: use "
                           "--engine onnxruntime" % (path, "s" if len(unsupported) > 1 else "", ", ".join(unsupported)))
    from mxnet.contrib.onnx.onnx2mx.import_onnx import GraphProto
    prepared = for_mxnet_importer(model)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sym, arg_params, aux_params = GraphProto().from_onnx(prepared.graph, opset_version=opset)
    except Exception as err:  # the importer fails with KeyError/AttributeError/MXNetError on what it misreads
        raise InvalidInput("MXNet's ONNX importer failed on %s (opset %d): %s: %s; use --engine onnxruntime"
                           % (path, opset, type(err).__name__, _first_line(err)))
    free = [n for n in sym.list_arguments() if n not in arg_params and n not in aux_params]
    names = [spec["name"] for spec in inputs]
    if sorted(free) != sorted(names):
        raise InvalidInput("MXNet's importer turned the inputs of %s (%s) into %s: use --engine onnxruntime"
                           % (path, ", ".join(names), ", ".join(free)))
    prefix = os.path.join(folder, "model")
    mx.model.save_checkpoint(prefix, 0, sym, arg_params, aux_params)
    feeds = example_feeds(inputs, seed=0)
    expected = run_onnxruntime(model.SerializeToString(), feeds, path)
    got = run_mxnet(prefix + "-symbol.json", prefix + "-0000.params", names, [o["name"] for o in outputs], feeds,
                    path)
    compare(expected, got, "%s converted to MXNet" % path)
    return prefix + "-symbol.json", prefix + "-0000.params"


def run_mxnet(symbol_path, params_path, input_names, output_names, feeds, path):
    """Outputs ``{name: array}`` of one MXNet forward pass on the CPU."""
    mx = _mx()
    try:
        with warnings.catch_warnings():  # SymbolBlock warns that it cannot infer the inputs' dtype
            warnings.simplefilter("ignore", UserWarning)
            net = mx.gluon.nn.SymbolBlock.imports(symbol_path, input_names, params_path, ctx=mx.cpu())
        out = net(*[mx.nd.array(feeds[n], dtype=feeds[n].dtype) for n in input_names])
        out = out if isinstance(out, (list, tuple)) else [out]
        return {name: value.asnumpy() for name, value in zip(output_names, out)}
    except mx.base.MXNetError as err:
        raise InvalidInput("a forward pass of %s converted to MXNet failed: %s; use --engine onnxruntime"
                           % (path, _first_line(err)))


# -- MXNet checkpoint -> ONNX (archive resnet --engine onnxruntime) ----------------------------
def strip_weight_inputs(model):
    """Remove initializers from ``graph.input`` in place (MXNet's exporter lists every weight there).

    Listed as inputs, weights are overridable, so onnxruntime cannot constant-fold them:
    no batch-norm folding, ResNet-152 at 175 ms instead of 82 ms.
    """
    weights = {tensor.name for tensor in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model


def mxnet_export_unsupported(symbol_path):
    """Operators of an MXNet symbol file that MXNet 1.9.1's ONNX exporter has no conversion for, sorted."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    known = set().union(*MXNetGraph.registry_.values())
    with open(symbol_path, encoding="utf-8") as handle:
        nodes = json.load(handle)["nodes"]
    return sorted({node["op"] for node in nodes if node["op"] != "null" and node["op"] not in known})


def export_mxnet_checkpoint(symbol_path, params_path, input_name, input_shape, path):
    """Export an MXNet checkpoint to ``path`` (ONNX, batch axis named ``N``), ready for onnxruntime.

    Deterministic: the same checkpoint gives the same bytes (archives stay byte-identical).
    """
    mx = _mx()
    onnx = onnx_module()
    import mxnet.onnx  # noqa: F401  (registers mx.onnx)
    unsupported = mxnet_export_unsupported(symbol_path)
    if unsupported:
        raise InvalidInput("%s uses operator%s %s, which MXNet's ONNX exporter cannot convert" % (
            symbol_path, "s" if len(unsupported) > 1 else "", ", ".join(unsupported)))
    shape = tuple(int(d) for d in input_shape)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mx.onnx.export_model(symbol_path, params_path, [shape], [np.float32], path, dynamic=True,
                                 dynamic_input_shapes=[("N",) + shape[1:]])
    except Exception as err:  # the exporter raises AttributeError/KeyError/NotImplementedError per operator
        raise InvalidInput("MXNet's ONNX exporter failed on %s: %s: %s"
                           % (symbol_path, type(err).__name__, _first_line(err)))
    model = strip_weight_inputs(onnx.load(path))
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = min(opset.version, MXNET_EXPORT_OPSET)
    model = check_model(model, path)
    names = [value.name for value in model.graph.input]
    if names != [input_name]:
        raise InvalidInput("the ONNX export of %s has inputs %s instead of %s" % (symbol_path, names, input_name))
    onnx.save(model, path)
    return model


def from_mxnet_checkpoint(symbol_path, params_path, input_name, input_shape, spec, topk, is_softmax):
    """(signature, files) of an onnxruntime image classifier made from an MXNet checkpoint.

    The export is checked at build time: onnxruntime must answer as MXNet does, within
    TOLERANCE, on a random input.
    """
    with tempfile.TemporaryDirectory(prefix="mmsctl-onnx-export-") as tmp:
        onnx_path = os.path.join(tmp, MODEL_FILE)
        model = export_mxnet_checkpoint(symbol_path, params_path, input_name, input_shape, onnx_path)
        with open(onnx_path, "rb") as handle:
            model_bytes = handle.read()
    inputs = [{"name": input_name, "shape": list(input_shape), "datatype": "FP32"}]
    output = tensor_spec(model.graph.output[0], "output", symbol_path)
    feeds = example_feeds(inputs, seed=0)
    expected = run_mxnet(symbol_path, params_path, [input_name], [output["name"]], feeds, symbol_path)
    got = run_onnxruntime(model_bytes, feeds, symbol_path)
    compare(got, expected, "the ONNX export of %s" % symbol_path, advice=None)
    classes = int(np.prod(expected[output["name"]].shape[1:]))
    signature = image_signature(inputs[0], dict(output, shape=[input_shape[0], classes]), spec, topk, is_softmax,
                                onnxruntime_engine())
    return signature, {MODEL_FILE: model_bytes}


# -- signatures and the build -------------------------------------------------------------------
def onnxruntime_engine():
    return {"name": "onnxruntime", "version": _ort().__version__, "model": MODEL_FILE}


def mxnet_engine(outputs):
    return {"name": "mxnet", "version": _mx().__version__, "symbol": SYMBOL_FILE, "params": PARAMS_FILE,
            "outputs": [spec["name"] for spec in outputs], "converted_from": "onnx"}


def image_signature(input_spec, output_spec, spec, topk, is_softmax, engine):
    return {
        "format": "mmsctl-signature/1",
        "task": "image-classification",
        "engine": engine,
        "inputs": [input_spec],
        "outputs": [output_spec],
        "preprocess": spec,
        "postprocess": {"synset": "synset.txt", "topk": int(topk), "apply_softmax": not is_softmax},
    }


def tensor_signature(inputs, outputs, engine, batched=None):
    """``batched``: what :func:`batching.classify` found (absent: batchable, as archives before it)."""
    signature = {"format": "mmsctl-signature/1", "task": "tensor", "engine": engine, "inputs": inputs,
                 "outputs": outputs, "protocol": "open-inference-protocol-v2"}
    if batched is not None:
        signature["batching"] = batched
    return signature


def image_input(inputs, config):
    """The one NCHW FP32 input of an image classifier, its H and W fixed (from the model or --input-shape)."""
    path = config.model
    if len(inputs) != 1:
        raise InvalidInput("%s has %d inputs (%s): an image classifier (--synset) takes exactly one image input"
                           % (path, len(inputs), ", ".join(s["name"] for s in inputs)))
    spec = dict(inputs[0])
    shape = list(spec["shape"])
    channels_ok = len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int))
    if spec["datatype"] != "FP32" or not channels_ok:
        raise InvalidInput("%s: input %r is %s %s; an image classifier (--synset) needs FP32 N,3,H,W"
                           % (path, spec["name"], spec["datatype"], shape))
    if config.input_shape is not None:
        wanted = builder.parse_shape(",".join(map(str, config.input_shape)))
        for axis, (have, want) in enumerate(zip(shape, wanted)):
            if isinstance(have, int) and have != want:
                raise InvalidInput("--input-shape %s disagrees with %s: input %r has %s on axis %d"
                                   % (",".join(map(str, wanted)), path, spec["name"], have, axis))
        shape = [shape[0] if not isinstance(shape[0], int) else wanted[0]] + wanted[1:]
    shape[1] = 3
    if not all(isinstance(d, int) for d in shape[2:]):
        raise InvalidInput("%s: input %r has size %s: pass --input-shape N,3,H,W to fix height and width"
                           % (path, spec["name"], shape))
    spec["shape"] = shape
    return spec


def _produced_by_softmax(model, output_name):
    return any(node.op_type == "Softmax" and output_name in node.output for node in model.graph.node)


def _classify(run, inputs):
    """``batching.classify`` of a tensor model (the job of a trial child process)."""
    return batching.classify(inputs, run, NUMPY_TYPES)


def build(config, note=None):
    """Validate ``config`` then write ``<export_path>/<name>.mar``; returns the path.

    ``note(line)`` hears the int8 gate's figures (``--quantize``; the default logs them)."""
    builder.check_name(config.name)
    path = builder.output_path(config.export_path, config.name, config.force)
    if config.engine not in ENGINES:
        raise InvalidInput("--engine %r: choose one of %s" % (config.engine, ", ".join(ENGINES)))
    if config.topk < 1:
        raise InvalidInput("--topk must be at least 1")
    if config.quantize is not None:
        if not config.synset:
            raise InvalidInput("--quantize int8 takes image classifiers (--synset), calibrated through their "
                               "preprocessing; a tensor model has none: quantize it with onnxruntime.quantization "
                               "and archive the int8 .onnx as it is")
        if config.engine != "onnxruntime":
            raise InvalidInput("--quantize int8 makes an onnxruntime archive: leave out --engine mxnet")
        config.quantize.check()
    for given, option in ((config.model, "--model"), (config.synset, "--synset")):
        if given:
            builder.check_inside_folder(given, option)
    raw = load_model(config.model)
    model = check_model(raw, config.model)
    inputs, outputs = read_signature(model, config.model)
    image = image_input(inputs, config) if config.synset else None
    served_inputs = [image] if image else inputs
    model_bytes = raw.SerializeToString()
    batched = None
    if image:  # an image classifier must run on an image of zeros: a failure refuses it
        kind, values = trials.run(dry_run, model_bytes, config.model, opsets(model), served_inputs, outputs,
                                  config.model, timeout=config.trial_timeout)
        if kind != trials.DONE:
            raise InvalidInput("%s cannot be served as an image classifier: %s" % (config.model, values))
    else:
        kind, batched = trials.run(_classify, model_bytes, config.model, opsets(model), inputs,
                                   timeout=config.trial_timeout)
        if kind != trials.DONE:  # served as it is, without a warm-up on made-up inputs
            batched = {"batchable": False, "example_shapes": None,
                       "reason": "a forward pass on made-up inputs %s: rows are not known to be independent" % (
                           batched if batched.startswith("failed") else "failed: %s" % batched)}
        if config.engine == "mxnet" and not batched["batchable"]:
            raise InvalidInput("%s is not batchable (%s): --engine mxnet serves batchable models only; use "
                               "--engine onnxruntime" % (config.model, batched["reason"]))
    files = {}
    if image:
        spec = builder.preprocess_spec(image["shape"], config.preprocess, config.resize, config.mean, config.std,
                                       config.channel_order, config.interpolation)
        classes = int(np.prod(values[outputs[0]["name"]].shape[1:]))
        labels = builder.read_synset(config.synset, classes)
        files["synset.txt"] = ("\n".join(labels) + "\n").encode("utf-8")
    if config.engine == "onnxruntime":
        files[MODEL_FILE] = model_bytes
        engine = onnxruntime_engine()
    else:
        with tempfile.TemporaryDirectory(prefix="mmsctl-onnx-mxnet-") as tmp:
            symbol_path, params_path = to_mxnet_checkpoint(raw, served_inputs, outputs, tmp, config.model)
            files[SYMBOL_FILE] = read_regular(symbol_path)
            files[PARAMS_FILE] = read_regular(params_path)
        engine = mxnet_engine(outputs)
    if image:
        output = dict(outputs[0], shape=[image["shape"][0], classes])
        signature = image_signature(image, output, spec, config.topk, _produced_by_softmax(model, output["name"]),
                                    engine)
    else:
        signature = tensor_signature(inputs, outputs, engine, batched)
    if config.quantize is not None:
        from . import quantize
        quantize.quantize_archive(signature, files, MODEL_FILE, config.quantize, config.name, note or logger.info)
    return builder.assemble(path, config.name, signature, files, force=config.force, description=config.description)
