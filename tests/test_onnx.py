"""ONNX archives on onnxruntime and MXNet, the v2 tensor protocol, and serving without MXNet.

The models are built here with ``onnx.helper``: a small convolutional image classifier
and a two-input int64 text model shaped like BERT's ``input_ids``/``attention_mask``.
They are archived for both engines, served by real MMS servers and compared with
onnxruntime run in-process.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import requests

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mmsctl import cli, server  # noqa: E402
from mmsctl.archives import mar, mxnet_checkpoint, onnx_model  # noqa: E402
from mmsctl.archives.errors import InvalidInput  # noqa: E402
from mmsctl.config import profiles  # noqa: E402
from mmsctl.handlers import imaging, onnx_engine, v2  # noqa: E402
from mmsctl.handlers.engines import create_engine  # noqa: E402
from mmsctl.handlers.errors import ModelLoadFailure  # noqa: E402
from mmsctl.handlers.tensor_model import TensorModel  # noqa: E402
from mmsctl.management import ManagementClient  # noqa: E402

from helpers import FakeContext, cached_venv, free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4
JSON = {"Content-Type": "application/json"}


# -- models built with onnx.helper ------------------------------------------------------------
def _weight(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def image_classifier(path, classes=10, seed=0):
    """Conv (no kernel_shape: MXNet's importer needs it added) + ReLU + global pool + Gemm + Softmax."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["data", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=1)]
    weights = [_weight("conv_w", rng.normal(0, 0.5, (8, 3, 3, 3))), _weight("conv_b", rng.normal(0, 0.1, 8)),
               _weight("fc_w", rng.normal(0, 1.0, (classes, 8))), _weight("fc_b", rng.normal(0, 0.1, classes))]
    graph = helper.make_graph(nodes, "tiny-classifier",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", classes])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def text_model(path, vocab=50, width=8, seed=1):
    """BERT-shaped inputs (int64 input_ids, attention_mask [batch, sequence]) -> logits FP32, lengths INT64."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"]),
             helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["mask"], ["mask3"], axes=[2]),
             helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
             helper.make_node("ReduceSum", ["masked"], ["summed"], axes=[1], keepdims=0),
             helper.make_node("ReduceSum", ["mask"], ["count"], axes=[1], keepdims=1),
             helper.make_node("Add", ["count", "one"], ["count1"]),
             helper.make_node("Div", ["summed", "count1"], ["pooled"]),
             helper.make_node("Gemm", ["pooled", "cls_w", "cls_b"], ["logits"], transB=1),
             helper.make_node("ReduceSum", ["attention_mask"], ["lengths"], axes=[1], keepdims=0)]
    weights = [_weight("embedding", rng.normal(0, 1.0, (vocab, width))), _weight("one", [1.0]),
               _weight("cls_w", rng.normal(0, 1.0, (2, width))), _weight("cls_b", [0.1, -0.1])]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
              for name in ("input_ids", "attention_mask")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
               helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"])]
    graph = helper.make_graph(nodes, "tiny-text", inputs, outputs, weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=6), path)
    return path


def one_node_model(path, op, in_type=TensorProto.FLOAT, domain="", in_shape=("N", 4), **attrs):
    node = helper.make_node(op, ["x"], ["y"], domain=domain, **attrs)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", in_type, list(in_shape))],
                              [helper.make_tensor_value_info("y", in_type, list(in_shape))])
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), path)
    return path


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx-models")
    (folder / "synset.txt").write_text("".join("n%08d class %d\n" % (i, i) for i in range(10)))
    return {"image": image_classifier(str(folder / "tiny.onnx")), "text": text_model(str(folder / "text.onnx")),
            "synset": str(folder / "synset.txt"), "dir": str(folder)}


ARCHIVES = {
    "tiny-ort": "tiny-ort.mar", "tiny-mx": "tiny-mx.mar", "text-ort": "text-ort.mar", "text-mx": "text-mx.mar",
    "r18-ort": "r18-ort.mar", "r18-mx": "r18-mx.mar",
}


@pytest.fixture(scope="module")
def onnx_store(tmp_path_factory, onnx_files, resnet_checkpoint):
    """Both test models and the ResNet-18 checkpoint, each archived for both engines."""
    store = str(tmp_path_factory.mktemp("onnx-store"))
    for engine, suffix in (("onnxruntime", "ort"), ("mxnet", "mx")):
        onnx_model.build(onnx_model.OnnxConfig(name="tiny-" + suffix, model=onnx_files["image"],
                                               synset=onnx_files["synset"], engine=engine, export_path=store))
        onnx_model.build(onnx_model.OnnxConfig(name="text-" + suffix, model=onnx_files["text"], engine=engine,
                                               export_path=store))
        mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(
            name="r18-" + suffix, symbol=resnet_checkpoint["symbol"], params=resnet_checkpoint["params"],
            synset=resnet_checkpoint["synset"], export_path=store, engine=engine))
    mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(  # MXNet checkpoint + ONNX export, the worker picks
        name="r18-auto", symbol=resnet_checkpoint["symbol"], params=resnet_checkpoint["params"],
        synset=resnet_checkpoint["synset"], export_path=store, engine="auto"))
    return store


@pytest.fixture(scope="module")
def onnx_server(servers, onnx_store):
    return servers.start(onnx_store, ARCHIVES, timeout=300)


def signature_of(store, archive):
    with zipfile.ZipFile(os.path.join(store, archive)) as zf:
        return json.loads(zf.read("signature.json"))


def ort_run(path, feeds):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def v2_body(ids, mask, request_id=None):
    body = {"inputs": [
        {"name": "input_ids", "shape": list(ids.shape), "datatype": "INT64", "data": ids.reshape(-1).tolist()},
        {"name": "attention_mask", "shape": list(mask.shape), "datatype": "INT64", "data": mask.tolist()}]}
    if request_id is not None:
        body["id"] = request_id
    return body


def text_batch(batch, sequence, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 50, (batch, sequence)).astype(np.int64)
    mask = (rng.random((batch, sequence)) > 0.3).astype(np.int64)
    return ids, mask


def check_v2_answer(answer, onnx_path, ids, mask, model_name):
    expected = ort_run(onnx_path, {"input_ids": ids, "attention_mask": mask})
    assert answer["model_name"] == model_name
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert set(outputs) == {"logits", "lengths"}
    assert outputs["logits"]["datatype"] == "FP32" and outputs["logits"]["shape"] == [ids.shape[0], 2]
    assert outputs["lengths"]["datatype"] == "INT64" and outputs["lengths"]["shape"] == [ids.shape[0]]
    logits = np.asarray(outputs["logits"]["data"], dtype=np.float32).reshape(outputs["logits"]["shape"])
    np.testing.assert_allclose(logits, expected["logits"], atol=TOLERANCE, rtol=0)
    assert outputs["lengths"]["data"] == expected["lengths"].tolist()


def post_image(server_state, model, path):
    with open(path, "rb") as handle:
        reply = requests.post("%s/predictions/%s" % (server_state.inference_url, model), data=handle.read(),
                              headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


# -- pure functions -------------------------------------------------------------------------------
@pytest.mark.parametrize("gpu_id, available, required, expected", [
    (None, ["CUDAExecutionProvider", "CPUExecutionProvider"], None, "cpu"),
    ("0", ["CUDAExecutionProvider", "CPUExecutionProvider"], None, "gpu"),
    ("0", ["CPUExecutionProvider"], None, "cpu"),
    ("0", ["CPUExecutionProvider"], "gpu", "needs a GPU"),
    (None, ["CPUExecutionProvider"], "eia", "Elastic Inference"),
    ("0", ["CUDAExecutionProvider", "CPUExecutionProvider"], "cpu", "cpu"),
])
def test_provider_choice(gpu_id, available, required, expected):
    if expected in ("cpu", "gpu"):
        providers, device = onnx_engine.select_providers(gpu_id, available, required)
        assert device.kind == expected
        assert (providers[0][0] == "CUDAExecutionProvider") == (expected == "gpu")
    else:
        with pytest.raises(ModelLoadFailure, match=expected):
            onnx_engine.select_providers(gpu_id, available, required)


@pytest.mark.parametrize("body, fragment", [
    ({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]}, "missing input 'mask'"),
    ({"inputs": [{"name": "idz", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]}, "unknown input 'idz'"),
    ({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]},
                 {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [True] * 3}]},
     "'ids' is INT32 but the model expects ids (INT64 [batch, seq])"),
    ({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]},
                 {"name": "mask", "shape": [1, 4], "datatype": "BOOL", "data": [True] * 4}]},
     "input 'mask' has shape [1, 4] but input 'ids' gave dimension 'seq' = 3"),
    ({"inputs": [{"name": "ids", "shape": [2, 3], "datatype": "INT64", "data": [1, 2, 3]},
                 {"name": "mask", "shape": [2, 3], "datatype": "BOOL", "data": [True] * 6}]},
     "'ids' has 3 values but shape [2, 3] needs 6"),
    ({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1.5, 2, 3]},
                 {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [True] * 3}]},
     "'ids' is declared INT64 but its data holds floating point values"),
    ({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]},
                 {"name": "mask", "shape": [2, 3], "datatype": "BOOL", "data": [True] * 6}]},
     "input 'ids' gave the batch size = 1"),
    ({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]},
                 {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [True] * 3}],
      "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
    ({"instances": [[1, 2, 3]]}, "Open Inference Protocol v2"),
])
def test_v2_request_errors_name_the_input(body, fragment):
    specs = [{"name": "ids", "shape": ["batch", "seq"], "datatype": "INT64"},
             {"name": "mask", "shape": ["batch", "seq"], "datatype": "BOOL"}]
    with pytest.raises(v2.BadRequest) as caught:
        v2.decode_request(body, specs, [{"name": "y", "shape": ["batch"], "datatype": "FP32"}])
    assert caught.value.status == 400
    assert fragment in caught.value.message


def test_v2_accepts_fp16_bool_and_nested_data():
    specs = [{"name": "x", "shape": [None, 2], "datatype": "FP16"}, {"name": "m", "shape": [None, 2],
                                                                     "datatype": "BOOL"}]
    request = v2.decode_request({"inputs": [
        {"name": "x", "shape": [2, 2], "datatype": "FP16", "data": [[0.5, 1], [2, 3]]},
        {"name": "m", "shape": [2, 2], "datatype": "BOOL", "data": [True, False, False, True]}]}, specs)
    assert request.batch == 2
    assert request.items[1]["x"].dtype == np.float16 and request.items[1]["x"].tolist() == [2.0, 3.0]
    assert request.items[0]["m"].tolist() == [True, False]


# -- building -------------------------------------------------------------------------------------
def test_signature_records_names_types_and_symbolic_dims(onnx_store):
    text = signature_of(onnx_store, "text-ort.mar")
    assert text["task"] == "tensor" and text["engine"]["name"] == "onnxruntime"
    assert text["inputs"] == [{"name": "input_ids", "shape": ["batch", "sequence"], "datatype": "INT64"},
                              {"name": "attention_mask", "shape": ["batch", "sequence"], "datatype": "INT64"}]
    assert text["outputs"] == [{"name": "logits", "shape": ["batch", 2], "datatype": "FP32"},
                               {"name": "lengths", "shape": ["batch"], "datatype": "INT64"}]
    image = signature_of(onnx_store, "tiny-mx.mar")
    assert image["task"] == "image-classification" and image["engine"]["name"] == "mxnet"
    assert image["inputs"][0]["shape"] == ["N", 3, 32, 32]
    assert image["postprocess"]["apply_softmax"] is False  # the graph ends in Softmax
    with zipfile.ZipFile(os.path.join(onnx_store, "tiny-mx.mar")) as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        assert manifest["engine"]["engineName"] == "MXNet"
        assert {"model-symbol.json", "model-0000.params"} <= set(zf.namelist())
    with zipfile.ZipFile(os.path.join(onnx_store, "text-ort.mar")) as zf:
        assert "engine" not in json.loads(zf.read("MAR-INF/MANIFEST.json"))
        assert json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]["handler"] == "mmsctl_handlers.tensor_model"


def test_resnet_export_has_no_weight_inputs(onnx_store):
    """MXNet's exporter lists every weight as a graph input; left there they block onnxruntime's folding."""
    with zipfile.ZipFile(os.path.join(onnx_store, "r18-ort.mar")) as zf:
        model = onnx.load_from_string(zf.read("model.onnx"))
    assert [value.name for value in model.graph.input] == ["data"]
    assert len(model.graph.initializer) > 50
    assert signature_of(onnx_store, "r18-ort.mar")["engine"]["name"] == "onnxruntime"


@pytest.mark.parametrize("case, options, fragment", [
    ("garbage", {}, "is not an ONNX model"),
    ("string-input", {}, "input 'x' has element type STRING"),
    ("dangling", {}, "fails onnx.checker"),
    ("erf-on-mxnet", {"engine": "mxnet"}, "operator Erf, which MXNet's ONNX importer cannot convert"),
    ("custom-op", {}, "com.example:NoSuchOp"),
    ("text-with-synset", {"synset": True}, "takes exactly one image input"),
    ("image-wrong-synset", {"synset": "short"}, "has 3 labels but the model has 10 classes"),
    ("image-wrong-shape", {"synset": True, "input_shape": [1, 3, 64, 64]}, "disagrees with"),
])
def test_build_refuses_what_it_cannot_serve(tmp_path, onnx_files, case, options, fragment):
    model = str(tmp_path / (case + ".onnx"))
    if case == "garbage":
        (tmp_path / "garbage.onnx").write_bytes(b"\x00not a protobuf" * 10)
    elif case == "string-input":
        one_node_model(model, "Identity", in_type=TensorProto.STRING)
    elif case == "dangling":
        graph = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"])], "bad",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), model)
    elif case == "erf-on-mxnet":
        one_node_model(model, "Erf")
    elif case == "custom-op":
        one_node_model(model, "NoSuchOp", domain="com.example")
    elif case.startswith("text"):
        model = onnx_files["text"]
    else:
        model = onnx_files["image"]
    synset = options.pop("synset", None)
    if synset == "short":
        synset = str(tmp_path / "short.txt")
        (tmp_path / "short.txt").write_text("a\nb\nc\n")
    elif synset:
        synset = onnx_files["synset"]
    config = onnx_model.OnnxConfig(name="refused", model=model, synset=synset, export_path=str(tmp_path), **options)
    with pytest.raises(InvalidInput) as caught:
        onnx_model.build(config)
    assert fragment in str(caught.value)
    assert not (tmp_path / "refused.mar").exists()


def test_cli_archive_onnx(tmp_path, onnx_files, capsys):
    code = cli.main(["archive", "onnx", "--name", "cli-text", "--model", onnx_files["text"],
                     "--export-path", str(tmp_path)])
    assert code == 0 and capsys.readouterr().out.strip().endswith("cli-text.mar")
    assert mar.describe(str(tmp_path / "cli-text.mar"))["manifest"]["model"]["modelName"] == "cli-text"
    code = cli.main(["archive", "onnx", "--name", "cli-text", "--model", onnx_files["text"],
                     "--export-path", str(tmp_path)])
    assert code == 1 and "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["archive", "onnx", "--help"])
    assert "example:\n  mmsctl archive onnx" in capsys.readouterr().out


# -- in-process: batching of v2 requests --------------------------------------------------------------
class RecordingEngine:
    """The real engine, with a record of the batch each forward pass received."""

    def __init__(self, engine):
        self.engine = engine
        self.batches = []
        self.device_description = engine.device_description

    def warm_up(self):
        self.engine.warm_up()

    def forward(self, items):
        self.batches.append([tuple(item["input_ids"].shape) for item in items])
        return self.engine.forward(items)


def test_requests_batched_on_the_batch_axis_and_split_back(tmp_path, onnx_store, onnx_files):
    model_dir = str(tmp_path / "text")
    mar.extract(os.path.join(onnx_store, "text-ort.mar"), model_dir)
    engines = []

    def factory(signature, folder, properties):
        engines.append(RecordingEngine(create_engine(signature, folder, properties)))
        return engines[-1]

    handler = TensorModel(engine_factory=factory)
    batches = [text_batch(2, 5, 1), text_batch(1, 5, 2), text_batch(3, 7, 3), text_batch(1, 5, 4)]
    context = FakeContext(model_dir, headers=[{"body": {"content-type": "application/json"}}] * len(batches))
    handler.initialize(context)
    engines[0].batches.clear()  # the warm-up
    answers = handler.handle([{"body": json.dumps(v2_body(ids, mask)).encode()} for ids, mask in batches], context)
    # Rows of equal sequence length share one forward pass (2 + 1 + 1 of length 5), length 7 gets its own.
    assert engines[0].batches == [[(5,)] * 4, [(7,)] * 3]
    for answer, (ids, mask) in zip(answers, batches):
        check_v2_answer(json.loads(answer), onnx_files["text"], ids, mask, "test-model")
    assert set(code for code, _ in context.statuses.values()) == {200}


# -- served by a real MMS ----------------------------------------------------------------------------------
def test_image_archive_same_top5_on_both_engines(onnx_server, onnx_store, onnx_files, cat_photo, coffee_photo):
    spec = signature_of(onnx_store, "tiny-ort.mar")["preprocess"]
    for photo in (cat_photo, coffee_photo):
        on_ort = post_image(onnx_server, "tiny-ort", photo)
        on_mx = post_image(onnx_server, "tiny-mx", photo)
        assert len(on_ort) == 5
        assert [a["class"] for a in on_ort] == [a["class"] for a in on_mx]
        np.testing.assert_allclose([a["probability"] for a in on_ort], [a["probability"] for a in on_mx],
                                   atol=TOLERANCE, rtol=0)
        with open(photo, "rb") as handle:
            pixels = imaging.preprocess(handle.read(), spec)
        probabilities = ort_run(onnx_files["image"], {"data": pixels[None]})["prob"][0]
        top = np.argsort(-probabilities, kind="stable")[:5]
        assert [a["class"] for a in on_ort] == ["n%08d class %d" % (i, i) for i in top]
        np.testing.assert_allclose([a["probability"] for a in on_ort], probabilities[top], atol=TOLERANCE, rtol=0)


def test_resnet_on_onnxruntime_matches_mxnet(onnx_server, cat_photo, coffee_photo):
    for photo in (cat_photo, coffee_photo):
        on_ort = post_image(onnx_server, "r18-ort", photo)
        on_mx = post_image(onnx_server, "r18-mx", photo)
        assert [a["class"] for a in on_ort] == [a["class"] for a in on_mx]
        np.testing.assert_allclose([a["probability"] for a in on_ort], [a["probability"] for a in on_mx],
                                   atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("model", ["text-ort", "text-mx"])
def test_tensor_model_v2_answer_equals_onnxruntime(onnx_server, onnx_files, model):
    ids, mask = text_batch(3, 6, seed=11)
    reply = requests.post("%s/predictions/%s" % (onnx_server.inference_url, model),
                          data=json.dumps(v2_body(ids, mask, request_id="req-1")), headers=JSON, timeout=60)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["id"] == "req-1"
    check_v2_answer(answer, onnx_files["text"], ids, mask, model)


@pytest.mark.parametrize("model, body, content_type, status, fragment", [
    ("text-ort", {"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]},
     "application/json", 400, "missing input 'attention_mask'"),
    ("text-ort", {"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                             {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]}]},
     "application/json", 400, "'input_ids' is FP32 but the model expects input_ids (INT64 [batch, sequence])"),
    ("text-ort", {"inputs": [{"name": "input_ids", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]},
                             {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]}]},
     "application/json", 400, "'input_ids' has shape [3] (rank 1) but the model expects"),
    ("text-mx", b"{not json", "application/json", 400, "malformed JSON"),
    ("text-ort", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", 415, "not JSON"),
    ("tiny-ort", {"inputs": [{"name": "data", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
     "application/json", 415, "not an image"),
])
def test_wrong_requests_get_a_clear_4xx(onnx_server, model, body, content_type, status, fragment):
    data = json.dumps(body) if isinstance(body, dict) else body
    reply = requests.post("%s/predictions/%s" % (onnx_server.inference_url, model), data=data,
                          headers={"Content-Type": content_type}, timeout=60)
    assert reply.status_code == status, reply.text
    assert fragment in reply.json()["message"]


def test_server_side_batches_are_split_back(onnx_server, onnx_files):
    client = ManagementClient(onnx_server.management_url)
    client.register("text-ort.mar", name="text-batched", batch_size=4, max_batch_delay=300, workers=1)
    cases = [text_batch(2, 5, 21), text_batch(1, 5, 22), text_batch(1, 9, 23), text_batch(3, 5, 24),
             text_batch(1, 5, 25), text_batch(2, 9, 26)]

    def call(case):
        ids, mask = case
        reply = requests.post("%s/predictions/text-batched" % onnx_server.inference_url,
                              data=json.dumps(v2_body(ids, mask)), headers=JSON, timeout=60)
        return reply.status_code, reply.json()

    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        replies = list(pool.map(call, cases))
    for (status, answer), (ids, mask) in zip(replies, cases):
        assert status == 200, answer
        check_v2_answer(answer, onnx_files["text"], ids, mask, "text-batched")


# -- an environment without MXNet ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def plain_venv():
    """A venv with stock multi-model-server, numpy, Pillow and onnxruntime: no MXNet."""
    requirements = os.path.join(ROOT, "requirements")
    return cached_venv("no-mxnet", [["-c", os.path.join(requirements, "runtime.txt"), "multi-model-server", "numpy",
                                     "Pillow", "psutil"],
                                    ["--no-deps", "-r", os.path.join(requirements, "onnxruntime.txt")]])


def start_plain_mms(python, store, models, state_dir):
    """Stock ``multi-model-server`` of that venv, its own TEMP and logs, on free ports."""
    profile = profiles.build_profile("cpu-latency", model_store=store, inference_port=free_port(),
                                     management_port=free_port())
    for sub in ("tmp", "logs"):
        os.makedirs(os.path.join(state_dir, sub), exist_ok=True)
    config = os.path.join(state_dir, "config.properties")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(profiles.render_properties(profile))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(profile.environment)
    bindir = os.path.dirname(python)
    env["PATH"] = os.pathsep.join([bindir] + [p for p in env.get("PATH", "").split(os.pathsep)
                                              if p and os.path.dirname(sys.executable) != p])
    env.update({"TEMP": os.path.join(state_dir, "tmp"), "TMPDIR": os.path.join(state_dir, "tmp"),
                "LOG_LOCATION": os.path.join(state_dir, "logs"), "METRICS_LOCATION": os.path.join(state_dir, "logs")})
    command = [os.path.join(bindir, "multi-model-server"), "--start", "--foreground", "--mms-config", config,
               "--model-store", store, "--models"] + ["%s=%s" % item for item in models.items()]
    with open(os.path.join(state_dir, "logs", "server.out"), "ab") as log:
        process = subprocess.Popen(command, env=env, cwd=state_dir, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    state = server.ServerState(pid=process.pid, state_dir=state_dir, inference_url=profile.inference_address,
                               management_url=profile.management_address, profile=profile.name, models=models)
    return process, state


@pytest.mark.server  # starts multi-model-server by hand
def test_onnxruntime_archives_serve_without_mxnet(plain_venv, onnx_store, onnx_files, cat_photo, tmp_path):
    check = subprocess.run([plain_venv, "-c", "import mxnet"], capture_output=True, timeout=60)
    assert check.returncode != 0 and b"No module named 'mxnet'" in check.stderr
    models = {"text": "text-ort.mar", "tiny": "tiny-ort.mar", "resnet": "r18-ort.mar", "dual": "r18-auto.mar"}
    process, state = start_plain_mms(plain_venv, onnx_store, models, str(tmp_path / "plain-server"))
    try:
        server.wait_ready(state, list(models), 240, process=process)
        ids, mask = text_batch(2, 4, seed=31)
        reply = requests.post("%s/predictions/text" % state.inference_url, data=json.dumps(v2_body(ids, mask)),
                              headers=JSON, timeout=60)
        assert reply.status_code == 200, reply.text
        check_v2_answer(reply.json(), onnx_files["text"], ids, mask, "text")
        for model in ("tiny", "resnet", "dual"):
            answer = post_image(state, model, cat_photo)
            assert len(answer) == 5 and answer[0]["probability"] >= answer[-1]["probability"]
        assert post_image(state, "dual", cat_photo) == post_image(state, "resnet", cat_photo)
    finally:
        server.stop(state)
    logs = ""
    for name in os.listdir(os.path.join(state.state_dir, "logs")):
        with open(os.path.join(state.state_dir, "logs", name), encoding="utf-8", errors="replace") as handle:
            logs += handle.read()
    assert "onnxruntime %s on cpu(0)" % ort.__version__ in logs
    # the archive with both engines, in a Python without MXNet
    assert "model dual runs on onnxruntime: the archive's first choice, installed; on the CPU" in logs
