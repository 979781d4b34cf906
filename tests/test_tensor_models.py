"""Any ONNX graph onnxruntime can run, served as a tensor model (issue 17).

About forty small graphs built with ``onnx.helper`` (elementwise, pooling, convolutions,
normalisations with weights or with scale/bias as inputs, gathers, matrix products,
reductions, casts, 1-D inputs, scalars, every datatype) are archived with
``onnx_model.build`` (what ``mmsctl archive onnx`` calls). Unit tests check what the
build decided (batchable or not, and why) and the handler in-process; the server tests
register a representative subset on ONE real MMS and compare every answer with
onnxruntime run in-process, exactly.
"""
import doctest
import json
import os
import zipfile

import numpy as np
import pytest
import requests

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mmsctl import cli  # noqa: E402
from mmsctl.archives import batching, mar, onnx_model  # noqa: E402
from mmsctl.archives.errors import InvalidInput  # noqa: E402
from mmsctl.handlers import v2  # noqa: E402
from mmsctl.handlers.engines import DATATYPES, create_engine  # noqa: E402
from mmsctl.handlers.errors import ModelLoadFailure  # noqa: E402
from mmsctl.handlers.tensor_model import TensorModel  # noqa: E402
from mmsctl.management import ManagementClient, ManagementError  # noqa: E402

from helpers import FakeContext  # noqa: E402

JSON = {"Content-Type": "application/json"}
F, F16, F64, I64, BOOL = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.BOOL

#: v2 datatype -> ONNX element type, every type the handlers carry.
ONNX_TYPES = {"BOOL": BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16, "UINT32": TensorProto.UINT32,
              "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8, "INT16": TensorProto.INT16,
              "INT32": TensorProto.INT32, "INT64": I64, "FP16": F16, "FP32": F, "FP64": F64}


# -- the graphs ----------------------------------------------------------------------------------------
def _w(name, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


def graph(nodes, inputs, outputs, weights=(), opset=13, domains=()):
    """A model: ``inputs`` as (name, element type, shape), ``outputs`` as (name, element type)."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(name, kind, shape[0] if shape else None)
                           for name, kind, *shape in outputs], list(weights))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(g, opset_imports=opsets, ir_version=8)
    try:  # fills in the outputs' shapes (onnx.checker wants one)
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a graph made to be refused is saved as it is
        return model


def one(op, shape, opset=13, weights=(), extra=(), out_type=F, **attrs):
    """x -> op(x, *extra) -> y."""
    return graph([helper.make_node(op, ["x"] + list(extra), ["y"], **attrs)], [("x", F, shape)],
                 [("y", out_type)], weights, opset)


def norm(op, shape, as_inputs, opset=13, params=("scale", "bias"), out=None, **attrs):
    """A normalisation whose parameters are weights, or inputs of their own (the issue's first failure)."""
    size = shape[-1] if op == "LayerNormalization" else shape[1]
    out = () if out is None else (out,)
    values = {"scale": _rand(size) + 2, "bias": _rand(size, seed=1), "mean": _rand(size, seed=2),
              "var": np.abs(_rand(size, seed=3)) + 0.5}
    nodes = [helper.make_node(op, ["x"] + list(params), ["y"], **attrs)]
    if as_inputs:
        return graph(nodes, [("x", F, shape)] + [(p, F, [size]) for p in params], [("y", F) + out], opset=opset)
    return graph(nodes, [("x", F, shape)], [("y", F) + out], [_w(p, values[p]) for p in params], opset)


def all_dtypes():
    names = list(ONNX_TYPES)
    return graph([helper.make_node("Identity", ["in_" + t], ["out_" + t]) for t in names],
                 [("in_" + t, ONNX_TYPES[t], ["N", 2]) for t in names], [("out_" + t, ONNX_TYPES[t]) for t in names])


def cast_all():
    names = [t for t in ONNX_TYPES if t != "FP32"]
    return graph([helper.make_node("Cast", ["x"], ["as_" + t], to=ONNX_TYPES[t]) for t in names],
                 [("x", F, ["N", 3])], [("as_" + t, ONNX_TYPES[t]) for t in names])


#: name -> (model factory, batchable, fragment of the reason when not)
GRAPHS = {
    "relu": (lambda: one("Relu", ["N", 4]), True, None),
    "add-weight": (lambda: one("Add", ["N", 4], weights=[_w("w", _rand(4))], extra=["w"]), True, None),
    "sigmoid-tanh": (lambda: graph([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
                                    helper.make_node("Mul", ["t", "x"], ["y"])], [("x", F, ["N", 5])], [("y", F)]),
                     True, None),
    "maxpool": (lambda: one("MaxPool", ["N", 2, 8, 8], kernel_shape=[2, 2], strides=[2, 2]), True, None),
    "avgpool": (lambda: one("AveragePool", ["N", 2, 6, 6], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), True, None),
    "global-pool": (lambda: one("GlobalAveragePool", ["N", 3, 5, 5]), True, None),
    "conv": (lambda: one("Conv", ["N", 3, 8, 8], weights=[_w("w", _rand(4, 3, 3, 3)), _w("b", _rand(4))],
                         extra=["w", "b"], pads=[1, 1, 1, 1]), True, None),
    "conv-transpose": (lambda: one("ConvTranspose", ["N", 3, 4, 4], weights=[_w("w", _rand(3, 2, 2, 2))], extra=["w"],
                                   strides=[2, 2]), True, None),
    "batchnorm-weights": (lambda: norm("BatchNormalization", ["N", 3, 4, 4], False,
                                       params=("scale", "bias", "mean", "var")), True, None),
    "instancenorm-weights": (lambda: norm("InstanceNormalization", ["N", 3, 5], False), True, None),
    "layernorm-weights": (lambda: norm("LayerNormalization", ["N", 6], False, opset=17), True, None),
    "softmax": (lambda: one("Softmax", ["N", 5], axis=1), True, None),
    "gemm": (lambda: one("Gemm", ["N", 4], weights=[_w("w", _rand(3, 4)), _w("b", _rand(3))], extra=["w", "b"],
                         transB=1), True, None),
    "matmul-weight": (lambda: one("MatMul", ["N", 4], weights=[_w("w", _rand(4, 2))], extra=["w"]), True, None),
    "embedding": (lambda: graph([helper.make_node("Gather", ["emb", "ids"], ["y"])], [("ids", I64, ["N", "S"])],
                                [("y", F)], [_w("emb", _rand(10, 3))]), True, None),
    "reduce-rows": (lambda: one("ReduceMean", ["N", 3, 4], axes=[1, 2], keepdims=0), True, None),
    "cast-int32": (lambda: one("Cast", ["N", 3], out_type=TensorProto.INT32, to=TensorProto.INT32), True, None),
    "argmax": (lambda: one("ArgMax", ["N", 5], out_type=I64, axis=1, keepdims=0), True, None),
    "flatten": (lambda: one("Flatten", ["N", 2, 3]), True, None),
    "two-inputs": (lambda: graph([helper.make_node("Mul", ["a", "b"], ["y"])], [("a", F, ["N", 3]), ("b", F, ["N", 3])],
                                 [("y", F)]), True, None),
    "where": (lambda: graph([helper.make_node("Where", ["c", "a", "b"], ["y"])],
                            [("c", BOOL, ["N", 4]), ("a", F, ["N", 4]), ("b", F, ["N", 4])], [("y", F)]), True, None),
    "topk": (lambda: graph([helper.make_node("TopK", ["x", "k"], ["values", "indices"])], [("x", F, ["N", 5])],
                           [("values", F), ("indices", I64)], [_w("k", [2], np.int64)]), True, None),
    "fixed-batch-1": (lambda: one("Relu", [1, 4]), True, None),
    "vector-dynamic": (lambda: one("Relu", ["N"]), True, None),
    "vector3-relu": (lambda: one("Relu", [3]), True, None),
    "all-dtypes": (all_dtypes, True, None),
    "cast-all": (cast_all, True, None),
    # not batchable: served as they are
    "batchnorm-inputs": (lambda: norm("BatchNormalization", ["N", 3, 4, 4], True,
                                      params=("scale", "bias", "mean", "var")),
                         False, "inputs disagree on their first axis: x N, scale 3, bias 3, mean 3, var 3"),
    "instancenorm-inputs": (lambda: norm("InstanceNormalization", ["N", 3, 5], True), False, "x N, scale 3, bias 3"),
    "layernorm-inputs": (lambda: norm("LayerNormalization", ["N", 6], True, opset=17), False, "x N, scale 6, bias 6"),
    "matmul-two-fixed": (lambda: graph([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, [2, 10]),
                                                                                        ("b", F, [10, 3])], [("y", F)]),
                         False, "inputs disagree on their first axis: a 2, b 10"),
    "matmul-symbolic": (lambda: graph([helper.make_node("MatMul", ["a", "b"], ["y"])],
                                      [("a", F, ["M", "K"]), ("b", F, ["K", "P"])], [("y", F)]),
                        False, "a M, b K"),
    "reduce-batch": (lambda: one("ReduceMean", ["N", 3, 4], axes=[0], keepdims=1), False,
                     "output 'y' has shape [1, 3, 4] for a batch of 2: its first axis is not the batch"),
    "reduce-all": (lambda: one("ReduceMean", ["N", 3], keepdims=0), False, "output 'y' is a scalar for a batch of 2"),
    "scalar-times-tensor": (lambda: graph([helper.make_node("Mul", ["s", "x"], ["y"])],
                                          [("s", F, []), ("x", F, ["N", 4])], [("y", F)]),
                            False, "input 's' is a scalar (rank 0)"),
    "scalar-in-out": (lambda: graph([helper.make_node("Neg", ["s"], ["y"])], [("s", F64, [])], [("y", F64)]), False,
                      "input 's' is a scalar (rank 0)"),
    "vector3-softmax": (lambda: one("Softmax", [3], axis=0), False, "rows are not independent"),
    "cumsum-rows": (lambda: one("CumSum", ["N"], weights=[_w("axis", 0, np.int64)], extra=["axis"]), False,
                    "output 'y' of row 1 run alone differs from the same row in a batch of 2"),
    "gather-inputs": (lambda: graph([helper.make_node("Gather", ["data", "idx"], ["y"])],
                                    [("data", F, [5, 4]), ("idx", I64, [2])], [("y", F)]), False, "data 5, idx 2"),
    "concat-batch": (lambda: graph([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)],
                                   [("a", F, ["N", 3]), ("b", F, ["N", 3])], [("y", F)]), False,
                     "output 'y' has shape [4, 3] for a batch of 2"),
    "transpose": (lambda: one("Transpose", ["N", 3]), False, "output 'y' has shape [3, 2] for a batch of 2"),
    "shape-of": (lambda: one("Shape", ["N", 3], out_type=I64), False, "rows are not independent"),
    "reshape-to-two": (lambda: one("Reshape", ["N", 3], weights=[_w("to", [2, -1], np.int64)], extra=["to"]), False,
                       "a forward pass on random rows failed on inputs x[1, 3]: [ONNXRuntimeError]"),
}

#: Registered together on one real server.
SERVED = ["vector3-relu", "vector-dynamic", "vector3-softmax", "batchnorm-inputs", "reduce-batch", "reduce-all",
          "matmul-two-fixed", "scalar-times-tensor", "scalar-in-out", "all-dtypes", "cast-all"]


def save(name, folder):
    path = os.path.join(str(folder), name + ".onnx")
    onnx.save(GRAPHS[name][0](), path)
    return path


def build(name, folder, **options):
    return onnx_model.build(onnx_model.OnnxConfig(name=name, model=save(name, folder), export_path=str(folder),
                                                  **options))


def signature_of(archive):
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("signature.json"))


# -- requests and the reference answers ---------------------------------------------------------------------
EXTREMES = {"BOOL": [True, False], "UINT8": [0, 255], "UINT16": [0, 65535], "UINT32": [0, 2 ** 32 - 1],
            "UINT64": [0, 2 ** 64 - 1], "INT8": [-128, 127], "INT16": [-32768, 32767], "INT32": [-2 ** 31, 2 ** 31 - 1],
            "INT64": [-2 ** 63, 2 ** 63 - 1], "FP16": [65504.0, -6.1e-05], "FP32": [3.4028235e38, -1.5e-45],
            "FP64": [1.7976931348623157e308, 5e-324]}


def feeds_for(name, signature, rows=None, seed=5):
    """Request tensors for a served model: random within reach of its indices, extremes for every dtype."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in signature["inputs"]:
        dtype = DATATYPES[spec["datatype"]]
        shape = list(signature["batching"]["example_shapes"][spec["name"]])
        if rows is not None and shape:
            shape[0] = rows
        if name == "all-dtypes":
            feeds[spec["name"]] = np.array([EXTREMES[spec["datatype"]]] * shape[0], dtype=dtype).reshape(shape)
        elif np.issubdtype(dtype, np.floating):
            feeds[spec["name"]] = np.asarray(rng.standard_normal(shape) * 3, dtype=dtype)
        else:
            feeds[spec["name"]] = np.asarray(rng.integers(0, 2, shape), dtype=dtype)
    return feeds


def v2_body(feeds):
    return {"inputs": [{"name": k, "shape": list(v.shape), "datatype": v2.datatype_of(v),
                        "data": v.reshape(-1).tolist()}
                       for k, v in feeds.items()]}


def reference(onnx_path, feeds):
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def assert_same(answer, expected):
    """Every output of a v2 answer equals onnxruntime's, in shape, datatype and every bit of value."""
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert set(outputs) == set(expected)
    for name, want in expected.items():
        got = outputs[name]
        assert got["shape"] == list(want.shape), name
        assert got["datatype"] == v2.datatype_of(want), name
        have = np.array(got["data"], dtype=want.dtype).reshape(got["shape"])
        np.testing.assert_array_equal(have, want, err_msg=name)


# -- build-time classification (unit) ----------------------------------------------------------------------------
@pytest.mark.unit
def test_there_are_about_forty_graphs():
    assert len(GRAPHS) >= 40
    assert sum(1 for _, batchable, _ in GRAPHS.values() if not batchable) >= 14


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_build_records_whether_batchable_and_why(tmp_path, name):
    _, batchable, fragment = GRAPHS[name]
    signature = signature_of(build(name, tmp_path))
    assert signature["task"] == "tensor"
    recorded = signature["batching"]
    assert recorded["batchable"] is batchable, recorded
    if batchable:
        assert "reason" not in recorded
    else:
        assert fragment in recorded["reason"], recorded["reason"]
    # the example shapes ran at build time: onnxruntime answers them
    feeds = {spec["name"]: np.zeros(recorded["example_shapes"][spec["name"]], DATATYPES[spec["datatype"]])
             for spec in signature["inputs"]}
    assert set(reference(str(tmp_path / (name + ".onnx")), feeds)) == {o["name"] for o in signature["outputs"]}


@pytest.mark.unit
def test_inspect_says_not_batchable_because(tmp_path, capsys):
    archive = build("batchnorm-inputs", tmp_path)
    assert cli.main(["archive", "inspect", archive]) == 0
    out = capsys.readouterr().out
    assert ("model: tensor model (Open Inference Protocol v2), not batchable, because inputs disagree on their "
            "first axis: x N, scale 3, bias 3, mean 3, var 3: each request runs as it is, batch_size 1 only") in out
    cli.main(["archive", "inspect", build("relu", tmp_path)])
    assert "model: tensor model (Open Inference Protocol v2), batchable on the first axis" in capsys.readouterr().out


@pytest.mark.unit
def test_mxnet_engine_refuses_a_model_that_is_not_batchable(tmp_path):
    with pytest.raises(InvalidInput, match="is not batchable .*--engine mxnet serves batchable models only"):
        build("matmul-two-fixed", tmp_path, engine="mxnet")


def _custom_op():
    return graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")], [("x", F, ["N", 4])],
                 [("y", F, ["N", 4])], domains=["com.example"])


def _op_before_its_opset():
    return norm("LayerNormalization", ["N", 6], False, opset=13, out=["N", 6])  # LayerNormalization came in opset 17


def _training_op():
    nodes = [helper.make_node("Momentum", ["r", "t", "x", "g", "v"], ["x2", "v2"], domain="ai.onnx.preview.training",
                              alpha=0.9, beta=1.0, mode="standard", norm_coefficient=0.0)]
    inputs = [("r", F, []), ("t", I64, []), ("x", F, ["N"]), ("g", F, ["N"]), ("v", F, ["N"])]
    return graph(nodes, inputs, [("x2", F), ("v2", F)], domains=["ai.onnx.preview.training"])


def _opset_from_the_future():
    model = one("Relu", ["N", 4])
    model.opset_import[0].version = 30
    return model


@pytest.mark.unit
@pytest.mark.parametrize("factory, fragments", [
    (_opset_from_the_future, ["operator sets ai.onnx 30", "Opset 30 is under development"]),
    (_custom_op, ["com.example:NoSuchOp", "com.example 1"]),
    (_op_before_its_opset, ["LayerNormalization", "domain_version of 13"]),
    (_training_op, ["Momentum", "ai.onnx.preview.training 1"]),
])
def test_models_onnxruntime_cannot_load_are_refused_naming_operator_and_opset(tmp_path, factory, fragments):
    path = str(tmp_path / "refused.onnx")
    onnx.save(factory(), path)
    with pytest.raises(InvalidInput) as caught:
        onnx_model.build(onnx_model.OnnxConfig(name="refused", model=path, export_path=str(tmp_path)))
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    assert not (tmp_path / "refused.mar").exists()


@pytest.mark.unit
def test_batching_doctests():
    for module in (batching, mar, v2):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module


# -- the v2 codec (unit) ---------------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("datatype", sorted(EXTREMES))
def test_every_datatype_round_trips_through_json(datatype):
    spec = {"name": "x", "shape": [2], "datatype": datatype}
    body = json.loads(json.dumps({"inputs": [dict(spec, data=EXTREMES[datatype])]}))
    request = v2.decode_request(body, [spec], batchable=False)
    array = request.whole["x"]
    assert array.dtype == DATATYPES[datatype]
    answer = json.loads(json.dumps(v2.encode_outputs("m", {"y": array}, [{"name": "y", "datatype": datatype}])))
    out = answer["outputs"][0]
    assert out["datatype"] == datatype and out["shape"] == [2]
    np.testing.assert_array_equal(np.array(out["data"], dtype=array.dtype), array)
    np.testing.assert_array_equal(array, np.array(EXTREMES[datatype], dtype=DATATYPES[datatype]))


@pytest.mark.unit
@pytest.mark.parametrize("entry, spec, batchable, fragment", [
    ({"shape": [2], "datatype": "BYTES", "data": ["a", "b"]}, ["N"], True, "'x' is BYTES, which this server does not"),
    ({"shape": [2], "datatype": "INT8", "data": [1, 300]}, ["N"], True, "holds 300, outside -128..127"),
    ({"shape": [1], "datatype": "UINT16", "data": [-1]}, ["N"], True, "holds -1, outside 0..65535"),
    ({"shape": [2, 3], "datatype": "FP32", "data": [0] * 6}, [2, 10], False, "dimension 1 must be 10"),
    ({"shape": [3, 10], "datatype": "FP32", "data": [0] * 30}, [2, 10], False, "dimension 0 must be 2"),
    ({"shape": [1], "datatype": "FP32", "data": [1]}, [], False, "has shape [1] (rank 1) but the model expects"),
    ({"shape": [0], "datatype": "FP32", "data": []}, [3], True, "the batch axis (first dimension) must be at least 1"),
])
def test_v2_refusals(entry, spec, batchable, fragment):
    with pytest.raises(v2.BadRequest) as caught:
        v2.decode_request({"inputs": [dict(entry, name="x")]}, [{"name": "x", "shape": spec, "datatype":
                                                                  entry["datatype"] if entry["datatype"] != "BYTES"
                                                                  else "FP32"}], batchable=batchable)
    assert caught.value.status == 400 and fragment in caught.value.message, caught.value.message


@pytest.mark.unit
def test_v2_scalars_empty_tensors_and_rank_zero_rows():
    scalar = v2.decode_request({"inputs": [{"name": "s", "shape": [], "datatype": "FP64", "data": 2.5}]},
                               [{"name": "s", "shape": [], "datatype": "FP64"}], batchable=False)
    assert scalar.whole["s"].shape == () and scalar.whole["s"] == 2.5
    empty = v2.decode_request({"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]},
                              [{"name": "x", "shape": ["N", 4], "datatype": "FP32"}])
    assert empty.items == [] and empty.whole["x"].shape == (0, 4)  # an empty batch goes through whole
    rows = v2.decode_request({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]},
                             [{"name": "x", "shape": [3], "datatype": "FP32"}])
    assert [row["x"].shape for row in rows.items] == [(), (), ()]  # rank-0 rows, stacked back to [3]
    symbols = [{"name": "a", "shape": ["M", "K"], "datatype": "FP32"}, {"name": "b", "shape": ["K", None],
                                                                         "datatype": "FP32"}]
    with pytest.raises(v2.BadRequest, match="input 'b' has shape \\[4, 2\\] but input 'a' gave dimension 'K' = 3"):
        v2.decode_request({"inputs": [{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [0] * 6},
                                      {"name": "b", "shape": [4, 2], "datatype": "FP32", "data": [0] * 8}]},
                          symbols, batchable=False)


# -- the handler in-process (unit) ----------------------------------------------------------------------------------
def handler_for(name, folder, batch_size=1, recorder=None):
    model_dir = str(folder / name)
    mar.extract(build(name, folder), model_dir)

    def factory(signature, directory, properties):
        engine = create_engine(signature, directory, properties)
        if recorder is not None:
            original = engine.forward

            def forward(items):
                recorder.append([{k: v.shape for k, v in item.items()} for item in items])
                return original(items)
            engine.forward = forward
        return engine

    handler = TensorModel(engine_factory=factory)
    context = FakeContext(model_dir, headers=[{"body": {"content-type": "application/json"}}] * 8)
    context.system_properties["batch_size"] = batch_size
    handler.initialize(context)
    return handler, context, model_dir


def answers(handler, context, bodies):
    replies = handler.handle([{"body": json.dumps(body).encode()} for body in bodies], context)
    return [(context.statuses[i][0], json.loads(reply)) for i, reply in enumerate(replies)]


@pytest.mark.unit
def test_rank_one_input_of_three_answers_and_batches(tmp_path):
    """The issue's HTTP 500: a single input of shape [3] split into rank-0 rows was fed at rank 1."""
    calls = []
    handler, context, model_dir = handler_for("vector3-relu", tmp_path, batch_size=4, recorder=calls)
    calls.clear()  # the warm-up
    x = np.array([-1.5, 0.25, 3.0], np.float32)
    y = np.array([2.0, -4.0], np.float32)
    (status, first), (status2, second) = answers(handler, context, [v2_body({"x": x}), v2_body({"x": y})])
    assert (status, status2) == (200, 200), (first, second)
    onnx_path = os.path.join(model_dir, "model.onnx")
    assert_same(first, reference(onnx_path, {"x": x}))
    assert second["outputs"][0]["shape"] == [2] and second["outputs"][0]["data"] == [2.0, 0.0]
    assert calls == [[{"x": ()}] * 5]  # one forward pass: rows of rank 0, both requests together


@pytest.mark.unit
def test_not_batchable_refuses_batch_size_above_one(tmp_path):
    with pytest.raises(ModelLoadFailure, match="model test-model is not batchable \\(inputs disagree on their first "
                                               "axis: a 2, b 10\\) but was registered with batch_size 4"):
        handler_for("matmul-two-fixed", tmp_path, batch_size=4)


@pytest.mark.unit
def test_not_batchable_runs_each_request_whole_and_bad_shapes_get_400(tmp_path):
    handler, context, model_dir = handler_for("matmul-symbolic", tmp_path)
    onnx_path = os.path.join(model_dir, "model.onnx")
    feeds = {"a": _rand(2, 5), "b": _rand(5, 4)}
    [(status, answer)] = answers(handler, context, [v2_body(feeds)])
    assert status == 200, answer
    assert_same(answer, reference(onnx_path, feeds))
    empty = {"a": np.zeros((0, 5), np.float32), "b": _rand(5, 4)}
    [(status, answer)] = answers(handler, context, [v2_body(empty)])
    assert status == 200 and answer["outputs"][0]["shape"] == [0, 4], answer
    [(status, answer)] = answers(handler, context, [v2_body({"a": _rand(2, 5), "b": _rand(3, 4)})])
    assert status == 400 and "gave dimension 'K' = 5" in answer["message"], answer


@pytest.mark.unit
def test_engine_failure_on_a_whole_request_is_a_400_naming_the_tensors(tmp_path):
    handler, context, _ = handler_for("gather-inputs", tmp_path)
    feeds = {"data": _rand(5, 4), "idx": np.array([0, 7], np.int64)}  # index 7 is out of range
    [(status, answer)] = answers(handler, context, [v2_body(feeds)])
    assert status == 400, answer
    assert answer["message"].startswith("the model cannot run on these tensors (data [5, 4], idx [2]): "), answer


# -- served by one real MMS --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tensor_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tensor-store")
    for name in SERVED:
        build(name, folder)
    return str(folder)


@pytest.fixture(scope="module")
def tensor_server(servers, tensor_store):
    return servers.start(tensor_store, {name: name + ".mar" for name in SERVED}, timeout=300)


def post(server_state, model, body):
    reply = requests.post("%s/predictions/%s" % (server_state.inference_url, model), data=json.dumps(body),
                          headers=JSON, timeout=60)
    return reply.status_code, reply.json()


@pytest.mark.server
@pytest.mark.parametrize("name", SERVED)
def test_served_answers_equal_onnxruntime_in_process(tensor_server, tensor_store, name):
    signature = signature_of(os.path.join(tensor_store, name + ".mar"))
    onnx_path = os.path.join(tensor_store, name + ".onnx")
    requests_to_send = [feeds_for(name, signature)]
    if signature["batching"]["batchable"] and not isinstance(signature["inputs"][0]["shape"][0], int):
        requests_to_send += [feeds_for(name, signature, rows=5, seed=6), feeds_for(name, signature, rows=0)]
    for feeds in requests_to_send:
        status, answer = post(tensor_server, name, v2_body(feeds))
        assert status == 200, answer
        assert answer["model_name"] == name
        assert_same(answer, reference(onnx_path, feeds))


@pytest.mark.server
def test_served_refusals(tensor_server, tensor_store):
    status, answer = post(tensor_server, "matmul-two-fixed", v2_body({"a": _rand(3, 10), "b": _rand(10, 3)}))
    assert status == 400 and "dimension 0 must be 2" in answer["message"], answer
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]}
    status, answer = post(tensor_server, "vector-dynamic", body)
    assert status == 400 and "'x' is BYTES, which this server does not carry" in answer["message"], answer
    client = ManagementClient(tensor_server.management_url)
    with pytest.raises(ManagementError, match="could not load it"):
        client.register("scalar-times-tensor.mar", name="scalar-batched", batch_size=4, max_batch_delay=100, workers=1)
    assert "scalar-batched" not in [m["modelName"] for m in client.list()]
    with open(os.path.join(tensor_server.state_dir, "logs", "load_failures.log"), encoding="utf-8") as handle:
        assert ("model scalar-batched is not batchable (input 's' is a scalar (rank 0)) but was registered with "
                "batch_size 4: register it with batch_size 1") in handle.read()
