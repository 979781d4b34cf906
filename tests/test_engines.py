"""Engines: MXNet fused on the CPU, and which engine a worker picks for an archive.

* the MXNet engine fuses on the CPU (MKLDNN subgraph backend) and answers as the
  unfused graph does (max|a-b| <= 1e-4 max|b|) on ResNet-18, EfficientNet-Lite0 and a
  two-input two-output model, whatever the batch size of each call; GPU keeps
  ``hybridize`` (a stand-in ``mx.gpu``), EI its own paths (tests/test_profiles.py);
* the choice of engine as a table (pure function) and ``MMSCTL_ENGINE``'s forms;
* archives with several engines: built, inspected, loaded in-process on each engine,
  MXNet-only with a one-line note when the exporter cannot convert an operator.
Serving such archives on stock MMS with and without onnxruntime: tests/test_serving.py
and tests/test_onnx.py.
"""
import dataclasses
import hashlib
import json
import logging
import os
import sys
import zipfile

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
ort = pytest.importorskip("onnxruntime")

from mmsctl import cli, processes, server  # noqa: E402
from mmsctl.archives import efficientnet_lite, mar, mxnet_checkpoint  # noqa: E402
from mmsctl.config import profiles  # noqa: E402
from mmsctl.handlers import engines, mxnet_engine  # noqa: E402
from mmsctl.handlers.engine_choice import choose_engine, parse_engine_override  # noqa: E402
from mmsctl.handlers.errors import ModelLoadFailure  # noqa: E402
from mmsctl.handlers.image_classifier import ImageClassifier  # noqa: E402

from helpers import FakeContext, MxnetDeviceStandIn, free_port  # noqa: E402

RELATIVE = 1e-4
UNFUSED = {"MXNET_SUBGRAPH_BACKEND": "NONE"}


# -- fused MXNet on the CPU ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def efficientnet_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("efficientnet")
    files = efficientnet_lite.export_checkpoint(str(folder), prefix="effnet", softmax=True)
    return {"symbol": files["symbol_file"], "params": files["params_file"], "dir": str(folder)}


class TwoInTwoOut(mx.gluon.HybridBlock):
    """conv + batch norm + relu on an image, a dense layer on a side vector: two inputs, two outputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = mx.gluon.nn.Conv2D(8, 3, padding=1, in_channels=3)
            self.bn = mx.gluon.nn.BatchNorm(in_channels=8)
            self.pool = mx.gluon.nn.GlobalAvgPool2D()
            self.head = mx.gluon.nn.Dense(5, in_units=12)
            self.side = mx.gluon.nn.Dense(3, in_units=4)

    def hybrid_forward(self, F, image, extra):
        features = F.flatten(self.pool(F.relu(self.bn(self.conv(image)))))
        return self.head(F.concat(features, extra, dim=1)), F.relu(self.side(extra))


@pytest.fixture(scope="module")
def two_in_two_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-in-two-out")
    mx.random.seed(5)
    net = TwoInTwoOut(prefix="twoio_")
    net.initialize(mx.init.Xavier())
    for name, param in net.collect_params().items():  # running statistics that are not 0/1
        if name.endswith(("running_mean", "running_var")):
            param.set_data(mx.nd.random.uniform(0.5, 1.5, param.shape))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 16, 16)), mx.nd.zeros((1, 4)))
    net.export(str(folder / "twoio"), 0)
    return {"symbol": str(folder / "twoio-symbol.json"), "params": str(folder / "twoio-0000.params"),
            "dir": str(folder)}


def mxnet_signature(checkpoint, inputs, outputs):
    folder = checkpoint["dir"]
    return {"engine": {"name": "mxnet", "symbol": os.path.relpath(checkpoint["symbol"], folder),
                       "params": os.path.relpath(checkpoint["params"], folder), "outputs": outputs},
            "inputs": [{"name": name, "shape": shape, "datatype": "FP32"} for name, shape in inputs],
            "outputs": [{"name": name} for name in outputs]}


def fused_and_unfused(checkpoint, inputs, outputs, mx_module=mx, gpu_id=None):
    signature = mxnet_signature(checkpoint, inputs, outputs)
    fused = mxnet_engine.MXNetEngine(signature, checkpoint["dir"], {"gpu_id": gpu_id}, mx=mx_module, environ={})
    unfused = mxnet_engine.MXNetEngine(signature, checkpoint["dir"], {"gpu_id": gpu_id}, mx=mx_module,
                                       environ=UNFUSED)
    return fused, unfused


def fused_ops(engine):
    """Names of the MKLDNN subgraph operators in the engine's partitioned graph (Gluon's cached graph)."""
    graph = json.loads(engine.net._cached_graph[1].tojson())
    return sorted({node["op"] for node in graph["nodes"] if node["op"].startswith("_sg_mkldnn")})


def random_items(inputs, count, seed):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape[1:]).astype(np.float32) for name, shape in inputs}
            for _ in range(count)]


def assert_same_answers(fused, unfused, inputs, batches):
    """Per call (one batch size each), every output within 1e-4 of the unfused graph's largest value."""
    for seed, count in enumerate(batches):
        items = random_items(inputs, count, seed)
        got, want = fused.forward(items), unfused.forward(items)
        assert len(got) == len(want) == count
        for row_got, row_want in zip(got, want):
            assert set(row_got) == set(row_want)
            for name in row_want:
                scale = np.abs(row_want[name]).max()
                assert np.abs(row_got[name] - row_want[name]).max() <= RELATIVE * scale, (name, count)


IMAGE = [("data", ["N", 3, 224, 224])]


@pytest.mark.parametrize("model", ["resnet18", "efficientnet-lite0"])
def test_fused_answers_equal_unfused_whatever_the_batch_size(model, resnet_checkpoint, efficientnet_checkpoint):
    checkpoint = resnet_checkpoint if model == "resnet18" else efficientnet_checkpoint
    output = "resnetv10_dense0_fwd_output" if model == "resnet18" else "efficientnet_lite0_softmax0_output"
    fused, unfused = fused_and_unfused(checkpoint, IMAGE, [output])
    assert (fused.preparation, unfused.preparation) == ("mkldnn", "hybridize")
    assert "_sg_mkldnn_conv" in fused_ops(fused)  # convolution + batch norm (+ activation) became one kernel
    # MMS server-side batches: 1..batch_size items per call, in any order of sizes
    assert_same_answers(fused, unfused, IMAGE, [1, 3, 1, 2, 4])


def test_fused_answers_equal_unfused_with_a_fixed_batch(resnet_checkpoint):
    """A signature fixing the batch (2) runs 3 items as 2 + 1 padded, fused as unfused."""
    inputs = [("data", [2, 3, 224, 224])]
    fused, unfused = fused_and_unfused(resnet_checkpoint, inputs, ["resnetv10_dense0_fwd_output"])
    assert fused.fixed_batch == 2
    assert_same_answers(fused, unfused, inputs, [3, 1, 2])


def test_fused_two_inputs_two_outputs(two_in_two_out):
    inputs = [("data0", ["N", 3, 16, 16]), ("data1", ["N", 4])]
    outputs = ["twoio_dense0_fwd_output", "twoio_relu1_output"]
    fused, unfused = fused_and_unfused(two_in_two_out, inputs, outputs)
    assert fused.preparation == "mkldnn" and fused_ops(fused)
    assert_same_answers(fused, unfused, inputs, [1, 2, 3, 1])


def test_gpu_keeps_hybridize(resnet_checkpoint):
    stand_in = MxnetDeviceStandIn(mx, "gpu")  # stand-in: this machine has no GPU
    on_gpu, unfused = fused_and_unfused(resnet_checkpoint, IMAGE, ["resnetv10_dense0_fwd_output"],
                                        mx_module=stand_in, gpu_id="1")
    assert (on_gpu.device.kind, on_gpu.device.index, on_gpu.preparation) == ("gpu", 1, "hybridize")
    assert stand_in.calls[:1] == [1]
    assert_same_answers(on_gpu, unfused, IMAGE, [1, 2])


def test_fusion_failure_is_a_one_line_load_failure(resnet_checkpoint, monkeypatch):
    def broken(self, *args, **kwargs):
        raise mx.base.MXNetError("partitioning went wrong\nStack trace:\n  [bt] (0) libmxnet.so")
    monkeypatch.setattr(mx.gluon.HybridBlock, "optimize_for", broken)
    with pytest.raises(ModelLoadFailure) as caught:
        fused_and_unfused(resnet_checkpoint, IMAGE, ["resnetv10_dense0_fwd_output"])
    assert caught.value.message == ("MXNet's MKLDNN fusion failed on this model: partitioning went wrong; set "
                                    "MXNET_SUBGRAPH_BACKEND=NONE in the server's environment to serve it unfused")


# -- the choice of engine -----------------------------------------------------------------------------
BOTH = ("onnxruntime", "mxnet")


@pytest.mark.parametrize("case, offered, installed, options, engine, reason", [
    ("cpu", BOTH, BOTH, {}, "onnxruntime", "the archive's first choice, installed; on the CPU"),
    ("no onnxruntime", BOTH, {"mxnet"}, {}, "mxnet", "onnxruntime, the archive's first choice, is not installed"),
    ("no mxnet", BOTH, {"onnxruntime"}, {}, "onnxruntime", "the archive's first choice, installed; on the CPU"),
    ("mxnet-only archive", ["mxnet"], BOTH, {}, "mxnet", "the archive has only mxnet"),
    ("onnx-only archive", ["onnxruntime"], BOTH, {"gpu_id": "0"}, "onnxruntime", "the archive has only onnxruntime"),
    ("gpu with CUDA", BOTH, BOTH, {"gpu_id": "0", "cuda_provider": True}, "onnxruntime",
     "on GPU 0 with the CUDA provider"),
    ("gpu without CUDA", BOTH, BOTH, {"gpu_id": 1}, "mxnet",
     "MMS assigned gpu_id=1 and this onnxruntime has no CUDA provider (onnxruntime-gpu): MXNet takes the GPU"),
    ("gpu without CUDA nor mxnet", BOTH, {"onnxruntime"}, {"gpu_id": "0"}, "onnxruntime", "first choice"),
    ("gpu id on a cpu profile", BOTH, BOTH, {"gpu_id": "0", "required": "cpu"}, "onnxruntime", "on the CPU"),
    ("gpu profile with CUDA", BOTH, BOTH, {"gpu_id": "2", "required": "gpu", "cuda_provider": True}, "onnxruntime",
     "GPU 2 with the CUDA provider"),
    ("ei profile", BOTH, BOTH, {"required": "eia"}, "mxnet", "Elastic Inference (MMSCTL_REQUIRE_DEVICE=eia) runs on "
                                                              "MXNet only"),
    ("ei build", BOTH, BOTH, {"ei_build": True}, "mxnet", "the EI build of MXNet is installed"),
    ("ei build, cpu profile", BOTH, BOTH, {"ei_build": True, "required": "cpu"}, "onnxruntime", "on the CPU"),
    ("ei build, gpu with CUDA", BOTH, BOTH, {"ei_build": True, "required": "gpu", "gpu_id": "0",
                                             "cuda_provider": True}, "onnxruntime", "CUDA"),
    ("forced mxnet", BOTH, BOTH, {"forced": "mxnet"}, "mxnet", "MMSCTL_ENGINE forces it"),
    ("forced onnxruntime on EI", BOTH, BOTH, {"forced": "onnxruntime", "ei_build": True}, "onnxruntime",
     "MMSCTL_ENGINE forces it"),
])
def test_engine_choice(case, offered, installed, options, engine, reason):
    chosen, why = choose_engine(offered, set(installed), model_name="m", **options)
    assert chosen == engine, case
    assert reason in why, (case, why)


@pytest.mark.parametrize("offered, installed, options, message", [
    (["mxnet"], BOTH, {"forced": "onnxruntime"},
     "MMSCTL_ENGINE forces onnxruntime for model m but its archive has only mxnet: drop the override or rebuild "
     "the archive with --engine auto"),
    (BOTH, {"mxnet"}, {"forced": "onnxruntime"},
     "MMSCTL_ENGINE forces onnxruntime for model m but onnxruntime is not installed in the server's Python"),
    (BOTH, set(), {}, "model m runs on onnxruntime or mxnet, and the server's Python has neither: install "
                      "onnxruntime or mxnet"),
    (["onnxruntime"], BOTH, {"required": "eia"}, "this profile needs Elastic Inference (MMSCTL_REQUIRE_DEVICE=eia), "
                                                 "which only MXNet can use, but the archive of model m has no MXNet"),
    (BOTH, {"onnxruntime"}, {"required": "eia"}, "MXNet is not installed in the server's Python: install the EI build"),
])
def test_engine_choice_refuses(offered, installed, options, message):
    with pytest.raises(ModelLoadFailure) as caught:
        choose_engine(offered, set(installed), model_name="m", **options)
    assert message in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("value, model, engine", [
    (None, "m", None), ("", "m", None), ("auto", "m", None), (" AUTO ", "m", None),
    ("mxnet", "m", "mxnet"), ("ONNXRuntime", "m", "onnxruntime"),
    ("m=mxnet", "m", "mxnet"), ("m=mxnet", "other", None),
    ("resnet-152=mxnet, bert=onnxruntime", "bert", "onnxruntime"),
    ("onnxruntime,m=mxnet", "m", "mxnet"), ("onnxruntime,m=mxnet", "x", "onnxruntime"),
    ("mxnet,m=auto", "m", None), ("m=mxnet,", "m", "mxnet"),
    ("v1.2=mxnet", "v1.2", "mxnet"),  # MMS names may hold dots
])
def test_engine_override_forms(value, model, engine):
    assert parse_engine_override(value, model) == engine


@pytest.mark.parametrize("value, problem", [
    ("tpu", "'tpu' is not an engine"),
    ("m=tpu", "'tpu' is not an engine"),
    ("m=", "'m=' is not an engine"),
    ("=mxnet", "'=mxnet' names no model before '='"),
    ("mxnet,onnxruntime", "two engines for every model (mxnet and onnxruntime)"),
    ("m=mxnet,m=onnxruntime", "model 'm' is given twice"),
])
def test_engine_override_refuses(value, problem):
    with pytest.raises(ModelLoadFailure) as caught:
        parse_engine_override(value, "other-model")  # the whole value is checked, whichever model reads it
    message = caught.value.message
    assert message == "MMSCTL_ENGINE=%r: %s: use auto, mxnet, onnxruntime or MODEL=ENGINE pairs, comma-separated" % (
        value, problem)


def test_probe_imports_onnxruntime_only_for_a_gpu_and_asks_its_providers():
    facts = engines.probe_worker(list(BOTH), None, "cpu")
    assert facts == {"installed": set(BOTH), "ei_build": False, "cuda_provider": False}
    # stand-in provider lists: this onnxruntime is the CPU build
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert engines.probe_worker(list(BOTH), "0", None, providers=lambda: cuda)["cuda_provider"] is True
    assert engines.probe_worker(list(BOTH), "0", None, providers=lambda: cuda[1:])["cuda_provider"] is False
    assert engines.probe_worker(["mxnet"], "0", None, providers=lambda: cuda)["cuda_provider"] is False


def test_old_single_engine_signatures_still_load(resnet_checkpoint):
    """Format 1 (``"engine": {...}``), as every archive built before several engines."""
    signature = mxnet_signature(resnet_checkpoint, [("data", [1, 3, 224, 224])], ["resnetv10_dense0_fwd_output"])
    signature["format"] = "mmsctl-signature/1"
    engine = engines.create_engine(signature, resnet_checkpoint["dir"], {"gpu_id": None}, model_name="old",
                                   environ={})
    assert type(engine).__name__ == "MXNetEngine" and engine.preparation == "mkldnn"
    with pytest.raises(ModelLoadFailure, match="signature.json has format 'mmsctl-signature/9'"):
        engines.create_engine(dict(signature, format="mmsctl-signature/9"), resnet_checkpoint["dir"], {},
                              model_name="old", environ={})


# -- archives with several engines ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def dual(tmp_path_factory, resnet_checkpoint):
    """ResNet-18 archived with --engine auto (onnxruntime + MXNet), built twice, and unpacked."""
    folder = tmp_path_factory.mktemp("dual")
    config = mxnet_checkpoint.ResnetConfig(
        name="r18", symbol=resnet_checkpoint["symbol"], params=resnet_checkpoint["params"],
        synset=resnet_checkpoint["synset"], export_path=str(folder))
    notes = []
    path = mxnet_checkpoint.build(config, note=notes.append)
    with open(path, "rb") as handle:
        first = hashlib.sha256(handle.read()).hexdigest()
    mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(**dict(config.__dict__, force=True)), note=notes.append)
    with open(path, "rb") as handle:
        second = hashlib.sha256(handle.read()).hexdigest()
    unpacked = mar.extract(path, str(folder / "unpacked"))
    return {"path": path, "dir": unpacked, "notes": notes, "hashes": (first, second)}


def test_dual_archive_holds_both_engines_in_preference_order(dual):
    assert dual["notes"] == []
    info = mar.describe(dual["path"])
    signature = info["signature"]
    assert signature["format"] == "mmsctl-signature/2" and "engine" not in signature
    assert [e["name"] for e in signature["engines"]] == ["onnxruntime", "mxnet"]
    assert signature["engines"][0] == {"name": "onnxruntime", "version": ort.__version__, "model": "model.onnx"}
    assert signature["engines"][1] == {"name": "mxnet", "version": mx.__version__, "symbol": "model-symbol.json",
                                       "params": "model-0000.params"}
    assert signature["engines_agree_within"] == 1e-4
    assert signature["outputs"][0]["name"] == "resnetv10_dense0_fwd"  # one name for both engines
    assert info["manifest"]["engine"] == {"engineName": "MXNet", "engineVersion": mx.__version__}
    assert {"model.onnx", "model-symbol.json", "model-0000.params", "synset.txt"} <= {e["name"] for e in
                                                                                     info["entries"]}


def test_dual_archive_is_deterministic(dual):
    """Same inputs, same bytes: the ONNX export included."""
    assert dual["hashes"][0] == dual["hashes"][1]


def test_inspect_shows_the_engines(dual, capsys):
    assert cli.main(["archive", "inspect", dual["path"]]) == 0
    out = capsys.readouterr().out
    assert "engines (the worker's preference order):\n  1. onnxruntime %s: model.onnx\n  2. mxnet %s: " \
           "model-symbol.json, model-0000.params\n" % (ort.__version__, mx.__version__) in out


@pytest.mark.parametrize("environ, facts, engine_class", [
    ({}, None, "OnnxRuntimeEngine"),
    ({}, {"installed": {"mxnet"}, "ei_build": False, "cuda_provider": False}, "MXNetEngine"),
    ({"MMSCTL_ENGINE": "mxnet"}, None, "MXNetEngine"),
    ({"MMSCTL_ENGINE": "other=mxnet,r18=onnxruntime"}, None, "OnnxRuntimeEngine"),
    ({"MMSCTL_ENGINE": "r18=mxnet"}, None, "MXNetEngine"),
    ({"MMSCTL_REQUIRE_DEVICE": "cpu"}, None, "OnnxRuntimeEngine"),
])
def test_dual_archive_loads_on_the_chosen_engine_with_equal_answers(dual, environ, facts, engine_class, cat_photo,
                                                                    caplog):
    def factory(signature, model_dir, properties):
        return engines.create_engine(signature, model_dir, properties, model_name="r18", environ=environ,
                                     facts=facts)
    handler = ImageClassifier(engine_factory=factory)
    context = FakeContext(dual["dir"], model_name="r18")
    with caplog.at_level(logging.INFO, logger="mmsctl.handlers.engines"):
        handler.initialize(context)
    assert type(handler.engine).__name__ == engine_class
    chosen = "onnxruntime" if engine_class == "OnnxRuntimeEngine" else "mxnet"
    assert "model r18 runs on %s: " % chosen in caplog.text
    with open(cat_photo, "rb") as handle:
        answer = json.loads(handler.handle([{"body": handle.read()}], context)[0])
    reference = _reference_answer(dual, cat_photo)
    assert [a["class"] for a in answer] == [a["class"] for a in reference]
    np.testing.assert_allclose([a["probability"] for a in answer], [a["probability"] for a in reference], atol=1e-4)


_REFERENCE = {}


def _reference_answer(dual, photo):
    """The answer of the unfused MXNet graph (MXNET_SUBGRAPH_BACKEND=NONE, forced mxnet)."""
    if photo not in _REFERENCE:
        def factory(signature, model_dir, properties):
            return engines.create_engine(signature, model_dir, properties, model_name="r18",
                                         environ=dict(UNFUSED, MMSCTL_ENGINE="mxnet"))
        handler = ImageClassifier(engine_factory=factory)
        context = FakeContext(dual["dir"], model_name="r18")
        handler.initialize(context)
        assert handler.engine.preparation == "hybridize"
        with open(photo, "rb") as handle:
            _REFERENCE[photo] = json.loads(handler.handle([{"body": handle.read()}], context)[0])
    return _REFERENCE[photo]


def test_forced_engine_that_cannot_load_is_one_line(dual, tmp_path):
    broken = tmp_path / "broken"
    mar.extract(dual["path"], str(broken))
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    signature = json.loads((broken / "signature.json").read_text())
    with pytest.raises(ModelLoadFailure) as caught:
        engines.create_engine(signature, str(broken), {"gpu_id": None}, model_name="r18",
                              environ={"MMSCTL_ENGINE": "onnxruntime"})
    message = caught.value.message
    assert message.startswith("model r18 failed to load on onnxruntime, which MMSCTL_ENGINE forces: ")
    assert "\n" not in message
    # the way out the message's reader has: force the other engine for this model
    engine = engines.create_engine(signature, str(broken), {"gpu_id": None}, model_name="r18",
                                   environ={"MMSCTL_ENGINE": "r18=mxnet"})
    assert type(engine).__name__ == "MXNetEngine"


def test_ei_build_picks_mxnet_for_a_dual_archive(dual, tmp_path, monkeypatch):
    """With the eimx stand-in importable and no device required, the worker takes MXNet on EI."""
    from test_profiles import EIMX_STAND_IN
    (tmp_path / "eimx.py").write_text(EIMX_STAND_IN)  # stand-in: the EI build is not installable (EI closed 2023)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        signature = json.loads(open(os.path.join(dual["dir"], "signature.json")).read())
        engine = engines.create_engine(signature, dual["dir"], {"gpu_id": None}, model_name="r18", environ={})
        assert type(engine).__name__ == "MXNetEngine"
        assert (engine.device.kind, engine.device.api, engine.preparation) == ("eia", "eimx", "eia")
        assert sys.modules["eimx"].CALLS and sys.modules["eimx"].CALLS[0]["shapes"] == [(1, 3, 224, 224)]
    finally:
        module = sys.modules.pop("eimx", None)
        if module is not None:
            module.uninstall()


# -- MXNet only when the exporter cannot convert an operator ----------------------------------------------
class WithErf(mx.gluon.HybridBlock):
    """A small classifier using ``erf``, which MXNet 1.9.1's ONNX exporter has no conversion for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = mx.gluon.nn.Conv2D(4, 3, padding=1, in_channels=3)
            self.pool = mx.gluon.nn.GlobalAvgPool2D()
            self.fc = mx.gluon.nn.Dense(3, in_units=4)

    def hybrid_forward(self, F, x):
        return self.fc(F.flatten(self.pool(F.erf(self.conv(x)))))


@pytest.fixture(scope="module")
def erf_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("erf")
    net = WithErf(prefix="erfnet_")
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(str(folder / "erfnet"), 0)
    (folder / "synset.txt").write_text("a\nb\nc\n")
    return {"symbol": str(folder / "erfnet-symbol.json"), "params": str(folder / "erfnet-0000.params"),
            "synset": str(folder / "synset.txt")}


def test_unconvertible_operator_gives_an_mxnet_only_archive_and_one_line(erf_checkpoint, tmp_path, capsys):
    argv = ["archive", "resnet", "--name", "erfnet", "--symbol", erf_checkpoint["symbol"], "--params",
            erf_checkpoint["params"], "--synset", erf_checkpoint["synset"], "--input-shape", "1,3,32,32",
            "--export-path", str(tmp_path)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("erfnet.mar")
    lines = captured.err.strip().splitlines()
    assert lines == ["mmsctl: note: erfnet: archived for MXNet only, without an ONNX export: %s uses operator erf, "
                     "which MXNet's ONNX exporter cannot convert" % erf_checkpoint["symbol"]], captured.err
    signature = mar.describe(str(tmp_path / "erfnet.mar"))["signature"]
    assert signature["engine"]["name"] == "mxnet" and "engines" not in signature
    with zipfile.ZipFile(str(tmp_path / "erfnet.mar")) as archive:
        assert "model.onnx" not in archive.namelist()
    # forcing onnxruntime is an error that says what to do
    assert cli.main(argv + ["--engine", "onnxruntime", "--force"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "uses operator erf" in err and "--engine mxnet" in err


@pytest.mark.server
def test_bad_engine_override_fails_the_start_on_a_real_server(model_store, tmp_path):
    """On a real server, as `mmsctl serve` reports a worker that cannot load: one line, saying what to use."""
    profile = profiles.build_profile("cpu-latency", vcpus=1, model_store=model_store, inference_port=free_port(),
                                     management_port=free_port())
    profile = dataclasses.replace(profile, environment={**profile.environment, "MMSCTL_ENGINE": "resnet18=tpu"})
    state_dir = str(tmp_path / "state")
    with pytest.raises(server.ServerError) as info:
        server.start(profile, state_dir, {"resnet18": "resnet18.mar"}, ready_timeout=120)
    assert "ModelLoadFailure: MMSCTL_ENGINE='resnet18=tpu': 'tpu' is not an engine: use auto, mxnet, onnxruntime " \
           "or MODEL=ENGINE pairs, comma-separated" in str(info.value)
    assert not processes.server_processes(server.ServerState(0, state_dir, "", "", profile.name))
