"""The same archives on TorchServe 0.12 as on MMS 1.1.11 (issue 18).

TorchServe needs its own environment (torchserve 0.12.0, torch 2.13.0 CPU, the engines): the
``torchserve_python`` fixture makes it once under ``~/.cache/mmsctl`` (``$MMSCTL_CACHE_DIR``) from
requirements/torchserve.txt and requirements/onnxruntime.txt, and reuses it while those pins are
unchanged. One TorchServe and one MMS serve the same archives side by side; every answer is
compared between them.
"""
import dataclasses
import json
import os
import zipfile

import numpy as np
import pytest
import requests

from mmsctl import cli, server, torchserve
from mmsctl.archives import builder, mar, mxnet_checkpoint
from mmsctl.config import profiles
from mmsctl.errors import ServerError
from mmsctl.management import ManagementClient

from helpers import REPO, cached_venv, free_port

REQUIREMENTS = [os.path.join(REPO, "requirements", name) for name in ("torchserve.txt", "onnxruntime.txt")]
MODELS = {"eff-ort": "eff-ort.mar", "eff-mx": "eff-mx.mar", "tensor": "tensor.mar"}
OCTET = {"Content-Type": "application/octet-stream"}
JSON = {"Content-Type": "application/json"}


# -- unit: what mmsctl renders and refuses for TorchServe -------------------------------------------------
@pytest.mark.unit
def test_torchserve_config_keeps_the_profile_and_refuses_what_it_cannot_serve():
    profile = profiles.build_profile("cpu-throughput", vcpus=4, model_store="/s", openmp="gnu", inference_port=9000,
                                     management_port=9001)
    text = torchserve.render_properties(profile, metrics_port=9002)
    lines = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines["inference_address"] == "http://127.0.0.1:9000"
    assert lines["management_address"] == "http://127.0.0.1:9001"
    assert lines["metrics_address"] == "http://127.0.0.1:9002"
    assert lines["default_workers_per_model"] == "4" and lines["decode_input_request"] == "false"
    assert lines["enable_model_api"] == "true" and lines["disable_token_authorization"] == "true"
    assert profile.environment["OMP_NUM_THREADS"] == "1"
    with pytest.raises(ServerError, match="management API on 127.0.0.1"):
        torchserve.check_profile(dataclasses.replace(profile, management_address="http://10.0.0.5:8081"))
    with pytest.raises(ServerError, match="profile ei is MMS only"):
        torchserve.check_profile(profiles.build_profile("ei", vcpus=2, openmp="gnu"))
    public = profiles.build_profile("cpu-latency", vcpus=2, openmp="gnu", inference_host="0.0.0.0")
    assert "inference_address=http://0.0.0.0:8080" in torchserve.render_properties(public)


@pytest.mark.unit
def test_manifest_carries_torchserve_fields_deterministically(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    doc = builder.manifest("m", "tensor", "onnxruntime")
    assert doc["model"]["modelVersion"] == "1.0" and doc["createdOn"] == "01/01/1980 00:00:00"
    assert doc["archiverVersion"].startswith("mmsctl-") and doc["runtime"] == "python"
    assert builder.manifest("m", "tensor", "onnxruntime") == doc
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert builder.manifest("m", "tensor", "onnxruntime")["createdOn"] == "02/01/1970 00:00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(builder.InvalidInput, match="SOURCE_DATE_EPOCH"):
        builder.manifest("m", "tensor", "onnxruntime")


@pytest.mark.unit
def test_torchserve_launcher_must_exist(tmp_path):
    with pytest.raises(ServerError, match="names no torchserve launcher"):
        torchserve.launcher({torchserve.LAUNCHER_ENV: str(tmp_path)})
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "torchserve"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert torchserve.launcher({torchserve.LAUNCHER_ENV: str(tmp_path)}) == str(exe)


# -- the TorchServe environment --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torchserve_python():
    """TorchServe's virtualenv, made once per set of pins."""
    return cached_venv("torchserve", [["-r", REQUIREMENTS[0]], ["--no-deps", "-r", REQUIREMENTS[1]]])


# -- one TorchServe and one MMS, the same archives ----------------------------------------------------------
def tensor_onnx(path):
    """y = x * w + b on [N, 4] float32 rows (batchable)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weights = [numpy_helper.from_array(np.arange(4, dtype=np.float32) / 4, "w"),
               numpy_helper.from_array(np.full(4, 0.5, dtype=np.float32), "b")]
    nodes = [helper.make_node("Mul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
    graph = helper.make_graph(nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


@pytest.fixture(scope="module")
def ts_store(tmp_path_factory):
    from mmsctl.archives import onnx_model
    store = tmp_path_factory.mktemp("ts-store")
    mxnet_checkpoint.build_efficientnet_lite0(str(store), name="eff-ort", engine="onnxruntime")
    mxnet_checkpoint.build_efficientnet_lite0(str(store), name="eff-mx", engine="mxnet")
    model = tensor_onnx(str(tmp_path_factory.mktemp("tensor") / "affine.onnx"))
    onnx_model.build(onnx_model.OnnxConfig(name="tensor", model=model, export_path=str(store)))
    return str(store)


@pytest.fixture(scope="module")
def pair(servers, torchserve_python, ts_store, tmp_path_factory):
    """{"mms": state, "torchserve": state}: both servers, cpu-latency on 2 vCPUs, every model loaded."""
    mms = servers.start(ts_store, MODELS, vcpus=2)
    state_dir = str(tmp_path_factory.mktemp("torchserve"))
    saved = os.environ.get(torchserve.LAUNCHER_ENV)
    os.environ[torchserve.LAUNCHER_ENV] = os.path.dirname(os.path.dirname(torchserve_python))
    try:  # as a user starts it
        code = cli.main(["serve", "--server", "torchserve", "--profile", "cpu-latency", "--vcpus", "2",
                         "--model-store", ts_store, "--state-dir", state_dir, "--timeout", "400", "--oversubscribe",
                         "--inference-port", str(free_port()), "--management-port", str(free_port()),
                         "--torchserve-metrics-port", str(free_port()),
                         "--models"] + ["%s=%s" % item for item in MODELS.items()])
    finally:
        if saved is None:
            os.environ.pop(torchserve.LAUNCHER_ENV)
        else:
            os.environ[torchserve.LAUNCHER_ENV] = saved
    assert code == 0  # three small models on 2 vCPUs: --oversubscribe, as the MMS fixture does
    ts = server.ServerState.load(state_dir)
    try:
        assert ts.server == "torchserve"
        yield {"mms": mms, "torchserve": ts}
    finally:
        server.stop(ts)


def both(pair, model, data, headers=OCTET):
    """(status, JSON answer) of each server for the same request."""
    answers = {}
    for kind, state in pair.items():
        reply = requests.post("%s/predictions/%s" % (state.inference_url, model), data=data, headers=headers,
                              timeout=120)
        answers[kind] = (reply.status_code, reply.json())
    return answers["mms"], answers["torchserve"]


@pytest.mark.parametrize("model", ["eff-ort", "eff-mx"])
@pytest.mark.installs
@pytest.mark.slow
@pytest.mark.server
def test_default_archive_answers_the_same_top5_on_both_servers(pair, model, cat_photo, coffee_photo):
    for photo, top in ((cat_photo, "n02123159 tiger cat"), (coffee_photo, "n07920052 espresso")):
        with open(photo, "rb") as handle:
            body = handle.read()
        (mms_status, mms), (ts_status, ts) = both(pair, model, body)
        assert mms_status == ts_status == 200, (mms, ts)
        assert [e["class"] for e in ts] == [e["class"] for e in mms] and ts[0]["class"] == top
        assert np.allclose([e["probability"] for e in ts], [e["probability"] for e in mms], rtol=0, atol=1e-6)
    logs = open(os.path.join(pair["torchserve"].state_dir, "logs", "model_log.log"), encoding="utf-8").read()
    engine = "onnxruntime" if model == "eff-ort" else "mxnet"
    assert "model %s runs on %s" % (model, engine) in logs


@pytest.mark.installs
@pytest.mark.slow
@pytest.mark.server
def test_tensor_archive_answers_the_same_v2_json(pair):
    rows = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    body = json.dumps({"id": "r1", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                               "data": rows.ravel().tolist()}]})
    (mms_status, mms), (ts_status, ts) = both(pair, "tensor", body, JSON)
    assert mms_status == ts_status == 200 and ts == mms
    expected = rows * (np.arange(4, dtype=np.float32) / 4) + 0.5
    assert ts["outputs"][0]["data"] == expected.ravel().tolist() and ts["model_name"] == "tensor"


@pytest.mark.installs
@pytest.mark.slow
@pytest.mark.server
def test_bad_input_gets_the_same_4xx(pair, cat_photo):
    with open(cat_photo, "rb") as handle:
        image = handle.read()
    cases = [("eff-ort", b"this is not an image", OCTET), ("eff-mx", b"", OCTET),
             ("eff-ort", b'{"inputs": []}', JSON), ("tensor", image, OCTET), ("tensor", b'{"inputs": [', JSON),
             ("tensor", json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32",
                                                "data": [0, 1, 2, 3, 4]}]}), JSON)]
    for model, body, headers in cases:
        (mms_status, mms), (ts_status, ts) = both(pair, model, body, headers)
        assert 400 <= mms_status < 500 and ts_status == mms_status and ts == mms, (model, body[:20], mms, ts)


@pytest.mark.installs
@pytest.mark.slow
@pytest.mark.server
def test_mmsctl_management_commands_work_on_torchserve(pair, ts_store, capsys):
    ts = pair["torchserve"]
    url = ["--management-url", ts.management_url]
    assert cli.main(["health"] + url) == 0
    capsys.readouterr()
    assert cli.main(["list", "--limit", "1"] + url) == 0  # pages of one, followed
    assert {m["modelName"] for m in json.loads(capsys.readouterr().out)} == set(MODELS)
    assert cli.main(["describe", "tensor"] + url) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["modelVersion"] == "1.0" and described["workers"][0]["status"] == "READY"
    assert described["loadedWorkers"] == 1 and described["allWorkersLoaded"] is True
    assert cli.main(["register", "tensor.mar", "--name", "tensor2", "--workers", "1"] + url) == 0
    assert cli.main(["scale", "tensor2", "--min-worker", "2"] + url) == 0
    assert ManagementClient(ts.management_url).ready_workers("tensor2") == (2, 2)
    # a model scaled to 0: TorchServe's /ping still answers 200 (other models have workers), `mmsctl health` fails
    assert cli.main(["scale", "tensor2", "--min-worker", "0", "--max-worker", "0"] + url) == 0
    assert requests.get(ts.inference_url + "/ping", timeout=30).status_code == 200
    assert cli.main(["health", "tensor2"] + url) == 1
    err = capsys.readouterr().err
    assert "model tensor2: no live worker has loaded it" in err and ts.management_url in err
    # and scales up again (MMS 1.1.11 never answers that request)
    assert cli.main(["scale", "tensor2", "--min-worker", "1"] + url) == 0
    assert cli.main(["health", "tensor2"] + url) == 0
    assert cli.main(["unregister", "tensor2"] + url) == 0
    assert "tensor2" not in {m["modelName"] for m in ManagementClient(ts.management_url).list()}


@pytest.mark.slow
def test_archive_inspect_shows_both_servers_view(ts_store, capsys):
    assert cli.main(["archive", "inspect", os.path.join(ts_store, "eff-mx.mar")]) == 0
    out = capsys.readouterr().out
    assert "MMS 1.1.11: model eff-mx, handler mmsctl_handlers.image_classifier, runtime python, engine MXNet" in out
    assert "TorchServe 0.12: model eff-mx version 1.0, handler mmsctl_handlers.image_classifier" in out
    with zipfile.ZipFile(os.path.join(ts_store, "tensor.mar")) as archive:
        manifest = json.loads(archive.read(mar.MANIFEST_PATH))
    assert manifest["createdOn"] == builder.created_on() and manifest["model"]["modelVersion"] == "1.0"
